//! Well-known ESO labels, annotations, finalizers and field-manager names.
//!
//! Every value is spelled exactly as External Secrets Operator spells it, so that Secrets,
//! ExternalSecrets and stores that ESO wrote are recognised (and keep working) when Lockstep
//! takes over a cluster. The functions that compute label values and field-manager names live
//! in [`crate::hash`].

/// Label on every Secret an ExternalSecret manages; its value is [`LABEL_MANAGED_VALUE`]. The
/// controller watches and caches only Secrets that carry it.
pub const LABEL_MANAGED: &str = "reconcile.external-secrets.io/managed";

/// The value of [`LABEL_MANAGED`].
pub const LABEL_MANAGED_VALUE: &str = "true";

/// Label on a Secret created with `creationPolicy: Owner`, pointing at its ExternalSecret; the
/// value is [`crate::hash::created_by_label`] of the ExternalSecret's namespace and name. Used to
/// find and delete orphaned Secrets when the target name changes.
pub const LABEL_CREATED_BY: &str = "reconcile.external-secrets.io/created-by";

/// Annotation on every managed Secret holding [`crate::hash::data_hash`] of its data; a Secret
/// whose annotation no longer matches its data is rewritten.
pub const ANNOTATION_DATA_HASH: &str = "reconcile.external-secrets.io/data-hash";

/// Annotation users set (to any new value, usually a timestamp) to force an ExternalSecret to
/// refresh; a ClusterExternalSecret copies it onto the ExternalSecrets it creates.
pub const ANNOTATION_FORCE_SYNC: &str = "external-secrets.io/force-sync";

/// Annotation on a SecretStore or ClusterSecretStore that silences the controller's warning
/// event about an unmaintained provider (its presence counts, not its value).
pub const ANNOTATION_IGNORE_MAINTENANCE_CHECKS: &str =
    "external-secrets.io/ignore-maintenance-checks";

/// Label carried by ESO's CRDs and by its webhook objects; values [`COMPONENT_CONTROLLER`] and
/// [`COMPONENT_WEBHOOK`].
pub const LABEL_COMPONENT: &str = "external-secrets.io/component";

/// [`LABEL_COMPONENT`] value on the CRDs.
pub const COMPONENT_CONTROLLER: &str = "controller";

/// [`LABEL_COMPONENT`] value on the webhook's Service, Secret and webhook configurations.
pub const COMPONENT_WEBHOOK: &str = "webhook";

/// Finalizer on every ExternalSecret, removed once its deletion policy has been carried out.
pub const FINALIZER_EXTERNAL_SECRET: &str =
    "externalsecrets.external-secrets.io/externalsecret-cleanup";

/// Finalizer on every ClusterExternalSecret, removed once the ExternalSecrets it created (and
/// its namespace finalizers) are gone.
pub const FINALIZER_CLUSTER_EXTERNAL_SECRET: &str =
    "externalsecrets.external-secrets.io/clusterexternalsecret-cleanup";

/// Prefix of the finalizer a ClusterExternalSecret puts on each target Namespace: the prefix
/// followed by the ClusterExternalSecret's name. (Recent ESO source shortens names whose
/// `ces-<name>` part exceeds 63 bytes to 50 bytes plus `-` and 8 hex digits of SHA-256.)
pub const FINALIZER_CES_NAMESPACE_PREFIX: &str = "externalsecrets.external-secrets.io/ces-";

/// Finalizer on a SecretStore or ClusterSecretStore while PushSecrets with `deletionPolicy:
/// Delete` still reference it.
pub const FINALIZER_SECRET_STORE: &str = "secretstore.externalsecrets.io/finalizer";

/// Finalizer on a PushSecret with `deletionPolicy: Delete`, removed once the pushed secrets are
/// deleted from their stores.
pub const FINALIZER_PUSH_SECRET: &str = "pushsecret.externalsecrets.io/finalizer";

/// Prefix of the field manager under which an ExternalSecret's Secret writes are recorded in
/// `managedFields`: the prefix followed by the ExternalSecret's name (see
/// [`crate::hash::field_manager`]).
pub const FIELD_MANAGER_PREFIX: &str = "externalsecrets.external-secrets.io/";

/// Prefix of the field manager used instead of [`FIELD_MANAGER_PREFIX`] when the readable form
/// would exceed [`FIELD_MANAGER_MAX_LEN`]: followed by the SHA3-224 hex of the name.
pub const FIELD_MANAGER_HASHED_PREFIX: &str = "externalsecrets.external-secrets.io/sha3/";

/// Longest readable field-manager name, in bytes; a longer one switches to the hashed form, so
/// ExternalSecret names of 28 bytes or more get a hashed field manager.
pub const FIELD_MANAGER_MAX_LEN: usize = 63;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_qualified_names() {
        // Labels, annotations and finalizers are `prefix/name` with a DNS-subdomain prefix and a
        // name part of at most 63 characters.
        for key in [
            LABEL_MANAGED,
            LABEL_CREATED_BY,
            ANNOTATION_DATA_HASH,
            ANNOTATION_FORCE_SYNC,
            ANNOTATION_IGNORE_MAINTENANCE_CHECKS,
            LABEL_COMPONENT,
            FINALIZER_EXTERNAL_SECRET,
            FINALIZER_CLUSTER_EXTERNAL_SECRET,
            FINALIZER_SECRET_STORE,
            FINALIZER_PUSH_SECRET,
        ] {
            let (prefix, name) = key.split_once('/').expect("prefixed");
            assert!(prefix.len() <= 253 && prefix.contains('.'), "{key}");
            assert!(!name.is_empty() && name.len() <= 63, "{key}");
            assert!(
                name.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c)),
                "{key}"
            );
        }
    }

    #[test]
    fn field_manager_prefixes_agree() {
        assert!(FIELD_MANAGER_HASHED_PREFIX.starts_with(FIELD_MANAGER_PREFIX));
        assert!(FINALIZER_CES_NAMESPACE_PREFIX.starts_with(FIELD_MANAGER_PREFIX));
        assert_eq!(FIELD_MANAGER_MAX_LEN - FIELD_MANAGER_PREFIX.len(), 27);
    }
}
