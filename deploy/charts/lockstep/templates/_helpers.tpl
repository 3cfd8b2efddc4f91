{{/*
The chart's name, overridable with nameOverride.
*/}}
{{- define "lockstep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: the release name, followed by the chart name unless
the release name already contains it.
*/}}
{{- define "lockstep.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels that select the controller's pods.
*/}}
{{- define "lockstep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lockstep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "lockstep.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "lockstep.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount the controller runs as.
*/}}
{{- define "lockstep.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lockstep.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository, then the digest when set, else the tag (appVersion by default).
*/}}
{{- define "lockstep.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Whether RBAC is a Role in scopedNamespace ("true") or a ClusterRole ("").
*/}}
{{- define "lockstep.scoped" -}}
{{- if and .Values.scopedRBAC .Values.scopedNamespace }}true{{ end }}
{{- end }}

{{/*
Whether ClusterSecretStores are served ("true" or "").
*/}}
{{- define "lockstep.clusterStores" -}}
{{- if and .Values.processClusterStore (not (include "lockstep.scoped" .)) }}true{{ end }}
{{- end }}

{{/*
Values that contradict each other, refused before anything is rendered.
*/}}
{{- define "lockstep.validate" -}}
{{- if and .Values.scopedRBAC (not .Values.scopedNamespace) }}
{{- fail "scopedRBAC needs scopedNamespace: the namespace the Role grants access in" }}
{{- end }}
{{- if and .Values.reloader.ignoreSecrets .Values.reloader.ignoreConfigMaps }}
{{- fail "reloader.ignoreSecrets and reloader.ignoreConfigMaps cannot both be true: nothing would be left to reload on (set reloader.enabled=false instead)" }}
{{- end }}
{{- if and (include "lockstep.scoped" .) .Values.reloader.enabled .Values.reloader.namespaceSelector }}
{{- fail "reloader.namespaceSelector follows the labels of every namespace and needs cluster-wide RBAC: it cannot be used with scopedRBAC" }}
{{- end }}
{{- end }}

{{/*
The rules Lockstep needs, for a ClusterRole (cluster-wide) or a Role (scopedRBAC).
*/}}
{{- define "lockstep.rules" -}}
{{- $scoped := include "lockstep.scoped" . }}
{{- $reload := .Values.reloader }}
# Lockstep's own kinds, and their status and finalizers.
- apiGroups: ["external-secrets.io"]
  resources: [{{ if include "lockstep.clusterStores" . }}"externalsecrets", "secretstores", "clustersecretstores"{{ else }}"externalsecrets", "secretstores"{{ end }}]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["external-secrets.io"]
  resources: [{{ if include "lockstep.clusterStores" . }}"externalsecrets/status", "secretstores/status", "clustersecretstores/status", "externalsecrets/finalizers"{{ else }}"externalsecrets/status", "secretstores/status", "externalsecrets/finalizers"{{ end }}]
  verbs: ["get", "patch", "update"]
# Target Secrets (written as ESO writes them, managed ones watched by label) and the Secrets
# stores reference for auth.
{{- if $reload.enabled }}
# Reload: Secrets are watched (metadata) and read when their resourceVersion moves; the hash
# key Secret is read, and created once when missing, in Lockstep's own namespace.
{{- end }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
{{- if and $reload.enabled (not $reload.ignoreConfigMaps) }}
# CA bundles of stores (caProvider) and templateFrom ConfigMaps (get); reload: the ConfigMaps
# workloads use are watched (metadata) and read like Secrets.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
{{- else }}
# CA bundles of stores (caProvider) and templateFrom ConfigMaps.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
{{- end }}
{{- if not $scoped }}
{{- if and $reload.enabled $reload.namespaceSelector }}
# ClusterSecretStore namespace conditions (get); reload: --namespace-selector follows the
# namespaces' labels (list, watch).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- else if include "lockstep.clusterStores" . }}
# ClusterSecretStore namespace conditions.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
{{- end }}
{{- end }}
{{- if $reload.enabled }}
# Reload: workloads are watched, get their baseline annotation (reload.lockstep.dev/hashes)
# and are rolled by a patch of their pod template (a Deployment's pause-period: a patch too).
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "list", "watch", "patch"]
{{- if not $reload.ignoreCronJobs }}
# Reload: a CronJob is rolled by creating a Job from it (the Jobs it owns are listed first);
# it gets the baseline annotation by a patch.
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- if not $reload.ignoreJobs }}
# Reload: a Job is rolled by deleting it and creating it again with the new template; it gets
# the baseline annotation by a patch. CronJobs' Jobs are listed and created.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
{{- else if not $reload.ignoreCronJobs }}
# Reload: a CronJob is rolled by creating a Job from it, after listing the Jobs it owns.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "create"]
{{- end }}
{{- if $reload.isArgoRollouts }}
# Reload: Argo Rollouts, when the cluster serves them: updated whole with the new pod
# template (Reloader's default), or patched (spec.restartAt for the restart strategy, and the
# baseline annotation).
- apiGroups: ["argoproj.io"]
  resources: ["rollouts"]
  verbs: ["get", "list", "watch", "patch", "update"]
{{- end }}
{{- end }}
# IRSA role annotations and TokenRequest for store ServiceAccounts.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
# Sync{{ if $reload.enabled }} and reload{{ end }} events{{ if $reload.enabled }} (Reloader's Reloaded / ReloadFail){{ end }}.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
The `lockstep run` arguments the values ask for.
*/}}
{{- define "lockstep.args" -}}
{{- $reload := .Values.reloader }}
- run
- {{ printf "--log-format=%s" .Values.log.format | quote }}
- {{ printf "--concurrency=%d" (int .Values.concurrent) | quote }}
- {{ printf "--metrics-addr=0.0.0.0:%d" (int .Values.metrics.listen.port) | quote }}
- {{ printf "--health-addr=0.0.0.0:%d" (int .Values.healthCheck.port) | quote }}
{{- with .Values.scopedNamespace }}
- {{ printf "--namespace=%s" . | quote }}
{{- end }}
{{- if not (include "lockstep.clusterStores" .) }}
- --disable-cluster-stores
{{- else if .Values.requireClusterStoreConditions }}
- --require-store-conditions
{{- end }}
{{- with .Values.controllerClass }}
- {{ printf "--controller-class=%s" . | quote }}
{{- end }}
{{- if $reload.enabled }}
- --reload
- --reload-strategy={{ if eq $reload.reloadStrategy "default" }}env-vars{{ else }}{{ $reload.reloadStrategy }}{{ end }}
{{- if $reload.autoReloadAll }}
- --auto-reload-all
{{- end }}
{{- if $reload.reloadOnCreate }}
- --reload-on-create=true
{{- end }}
{{- if $reload.reloadOnDelete }}
- --reload-on-delete=true
{{- end }}
{{- if $reload.ignoreSecrets }}
- --resources-to-ignore=secrets
{{- else if $reload.ignoreConfigMaps }}
- --resources-to-ignore=configMaps
{{- end }}
{{- $ignored := list }}
{{- if $reload.ignoreJobs }}{{ $ignored = append $ignored "jobs" }}{{ end }}
{{- if $reload.ignoreCronJobs }}{{ $ignored = append $ignored "cronjobs" }}{{ end }}
{{- with $ignored }}
- {{ printf "--ignored-workload-types=%s" (join "," .) | quote }}
{{- end }}
{{- with $reload.namespaceSelector }}
- {{ printf "--namespace-selector=%s" . | quote }}
{{- end }}
{{- with $reload.resourceLabelSelector }}
- {{ printf "--resource-label-selector=%s" . | quote }}
{{- end }}
{{- with $reload.namespacesToIgnore }}
- {{ printf "--namespaces-to-ignore=%s" (join "," .) | quote }}
{{- end }}
- {{ printf "--reload-max-rollouts-per-minute=%d" (int $reload.maxRolloutsPerMinute) | quote }}
{{- if $reload.udsPodReload }}
- --uds-pod-reload
{{- end }}
{{- with $reload.hashKeySecretName }}
- {{ printf "--reload-key-name=%s" . | quote }}
{{- end }}
{{- $flags := dict "auto" "auto-annotation" "secretAuto" "secret-auto-annotation" "configmapAuto" "configmap-auto-annotation" "search" "auto-search-annotation" "match" "search-match-annotation" "secret" "secret-annotation" "configmap" "configmap-annotation" "ignore" "ignore-annotation" "secretExclude" "secret-exclude-annotation" "configmapExclude" "configmap-exclude-annotation" "pausePeriod" "pause-deployment-annotation" "pauseTime" "pause-deployment-time-annotation" }}
{{- range $key, $name := $reload.customAnnotations }}
- {{ printf "--%s=%s" (get $flags $key) $name | quote }}
{{- end }}
{{- end }}
{{- range $flag, $value := .Values.extraArgs }}
{{- if or (eq (toString $value) "true") (eq (toString $value) "") }}
- {{ printf "--%s" $flag | quote }}
{{- else if ne (toString $value) "false" }}
- {{ printf "--%s=%v" $flag $value | quote }}
{{- end }}
{{- end }}
{{- end }}
