//! ESO's template step for `target.template`: pure functions from provider data and the
//! template sources the reconciler has read (ConfigMaps, Secrets, literals) to the templated
//! data, labels, annotations and type. Precedence as in ESO: `template.data` over
//! `templateFrom` (in order) over provider data, which is kept only with `mergePolicy: Merge`
//! or when the template has no data templates at all.

use std::collections::BTreeMap;

use lockstep_api::external_secret::{
    DecodingStrategy, ExternalSecretTemplate, TemplateMergePolicy, TemplateScope,
};
use lockstep_api::value::SecretValue;
use lockstep_providers::SecretMap;
use lockstep_template::{Delims, Limits, Template, TemplateError};

use super::build;
use crate::error::{Error, Result};

/// Where a template's output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The Secret's data.
    Data,
    /// The Secret's labels.
    Labels,
    /// The Secret's annotations.
    Annotations,
}

impl Target {
    /// ESO's `templateFrom[].target` (case-insensitive; Data when empty).
    pub fn parse(target: Option<&str>) -> Result<Target> {
        match target.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("data") => Ok(Target::Data),
            Some("labels") => Ok(Target::Labels),
            Some("annotations") => Ok(Target::Annotations),
            Some(_) => Err(Error::Invalid(
                "templateFrom target is not allowed when targeting a Secret, must be one of \"Data\", \"Annotations\" or \"Labels\"".into(),
            )),
        }
    }
}

/// One template read from a `templateFrom` source.
pub struct SourceTemplate {
    /// Where it came from, for error messages (`configMap tpl, key app.yaml`).
    pub origin: String,
    /// The key it is stored under (the output key in the Values scope).
    pub key: String,
    /// The template text (it may come from a Secret: kept in a wiping container).
    pub text: SecretValue,
    /// Values: the output goes under `key`; KeysAndValues: the output is a YAML map.
    pub scope: TemplateScope,
}

/// A resolved `templateFrom` entry.
pub struct Source {
    /// Where its output goes.
    pub target: Target,
    /// How rendered values are decoded before they are stored.
    pub decoding: DecodingStrategy,
    /// Its templates, in the order ESO applies them.
    pub templates: Vec<SourceTemplate>,
}

/// What the template step produced.
#[derive(Clone, Default)]
pub struct Templated {
    /// The Secret's data from this ExternalSecret.
    pub data: SecretMap,
    /// Labels set by the template.
    pub labels: BTreeMap<String, String>,
    /// Annotations set by the template.
    pub annotations: BTreeMap<String, String>,
    /// The Secret's type, when the template sets one.
    pub type_: Option<String>,
    /// Finalizers the template adds to the Secret (`metadata.finalizers`, not rendered, as ESO).
    pub finalizers: Vec<String>,
}

/// Renders `template` over `provider` data with the resolved `sources`.
pub fn apply(
    template: &ExternalSecretTemplate,
    provider: &SecretMap,
    sources: &[Source],
    limits: &Limits,
) -> Result<Templated> {
    let mut out = Templated {
        type_: template.type_.clone().filter(|t| !t.is_empty()),
        finalizers: template
            .metadata
            .as_ref()
            .and_then(|m| m.finalizers.clone())
            .unwrap_or_default(),
        ..Templated::default()
    };
    let data_templates = template.data.as_ref().is_some_and(|d| !d.is_empty());
    let from_templates = template
        .template_from
        .as_ref()
        .is_some_and(|t| !t.is_empty());
    if template.merge_policy == Some(TemplateMergePolicy::Merge)
        || (!data_templates && !from_templates)
    {
        out.data = provider.clone();
    }
    // Literal metadata first; rendered metadata replaces it at the end, as in ESO.
    let metadata = template.metadata.clone().unwrap_or_default();
    out.labels
        .extend(metadata.labels.clone().unwrap_or_default());
    out.annotations
        .extend(metadata.annotations.clone().unwrap_or_default());

    for source in sources {
        for t in &source.templates {
            let text = t.text.expose_str().ok_or_else(|| {
                Error::Template(format!("{}: the template is not valid UTF-8", t.origin))
            })?;
            let rendered = render(&t.origin, text, provider, limits)?;
            match t.scope {
                TemplateScope::Values => {
                    store(&mut out, source.target, &t.key, rendered, source.decoding)?
                }
                TemplateScope::KeysAndValues => {
                    let rendered = SecretValue::from(rendered);
                    let text = rendered.expose_str().ok_or_else(|| {
                        Error::Template(format!("{}: the output is not valid UTF-8", t.origin))
                    })?;
                    let map: BTreeMap<String, String> =
                        serde_saphyr::from_str(text).map_err(|_| {
                            Error::Template(format!(
                                "{}: could not unmarshal the output into a map of strings",
                                t.origin
                            ))
                        })?;
                    for (k, v) in map {
                        store(&mut out, source.target, &k, v.into_bytes(), source.decoding)?;
                    }
                }
            }
        }
    }
    for (key, text) in template.data.iter().flatten() {
        let rendered = render(&format!("data key {key}"), text, provider, limits)?;
        store(
            &mut out,
            Target::Data,
            key,
            rendered,
            DecodingStrategy::None,
        )?;
    }
    for (key, text) in metadata.labels.iter().flatten() {
        let rendered = render(&format!("label {key}"), text, provider, limits)?;
        store(
            &mut out,
            Target::Labels,
            key,
            rendered,
            DecodingStrategy::None,
        )?;
    }
    for (key, text) in metadata.annotations.iter().flatten() {
        let rendered = render(&format!("annotation {key}"), text, provider, limits)?;
        store(
            &mut out,
            Target::Annotations,
            key,
            rendered,
            DecodingStrategy::None,
        )?;
    }
    Ok(out)
}

fn store(
    out: &mut Templated,
    target: Target,
    key: &str,
    rendered: Vec<u8>,
    decoding: DecodingStrategy,
) -> Result<()> {
    let value = build::decode(SecretValue::from(rendered), decoding, key)?;
    match target {
        Target::Data => {
            out.data.insert(key.to_owned(), value);
        }
        Target::Labels | Target::Annotations => {
            let text = value.expose_str().ok_or_else(|| {
                Error::Template(format!(
                    "the value for metadata key {key:?} is not valid UTF-8"
                ))
            })?;
            let map = if target == Target::Labels {
                &mut out.labels
            } else {
                &mut out.annotations
            };
            map.insert(key.to_owned(), text.to_owned());
        }
    }
    Ok(())
}

/// Renders one template as ESO does (`missingkey=error`, provider data as
/// `map[string]string`).
fn render(origin: &str, text: &str, data: &SecretMap, limits: &Limits) -> Result<Vec<u8>> {
    let template = Template::parse(text, &Delims::default()).map_err(|e| failed(origin, &e))?;
    template
        .execute_pairs(data.iter().map(|(k, v)| (k.as_str(), v.expose())), limits)
        .map_err(|e| failed(origin, &e))
}

/// Renders `rewrite.transform`'s template for one key (`.value` is the key).
pub fn transform_key(index: usize, text: &str, key: &str, limits: &Limits) -> Result<String> {
    let origin = format!("rewrite[{index}].transform");
    let template = Template::parse(text, &Delims::default()).map_err(|e| failed(&origin, &e))?;
    let out = template
        .execute_pairs([("value", key.as_bytes())], limits)
        .map_err(|e| failed(&origin, &e))?;
    String::from_utf8(out)
        .map_err(|_| Error::Invalid(format!("{origin}: the new key is not valid UTF-8")))
}

/// A template error as a condition message: where (source, line, column) and what, never a
/// value (the engine's messages carry none; `fail` text is scrubbed by the caller like every
/// error message).
fn failed(origin: &str, e: &TemplateError) -> Error {
    Error::Template(format!("could not execute template ({origin}): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_api::external_secret::TemplateMetadata;

    fn provider() -> SecretMap {
        [("user", "app"), ("password", "s3cret"), ("host", "db")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), SecretValue::from(v)))
            .collect()
    }

    fn text(v: &SecretValue) -> &str {
        v.expose_str().expect("utf-8")
    }

    fn source(target: Target, templates: Vec<(&str, &str, TemplateScope)>) -> Source {
        Source {
            target,
            decoding: DecodingStrategy::None,
            templates: templates
                .into_iter()
                .map(|(key, text, scope)| SourceTemplate {
                    origin: format!("literal {key}"),
                    key: key.to_owned(),
                    text: SecretValue::from(text),
                    scope,
                })
                .collect(),
        }
    }

    #[test]
    fn data_templates_replace_provider_data_unless_merge() {
        let mut template = ExternalSecretTemplate {
            data: Some(
                [(
                    "url".to_owned(),
                    "postgres://{{ .user }}:{{ .password }}@{{ .host }}".to_owned(),
                )]
                .into(),
            ),
            ..Default::default()
        };
        let out = apply(&template, &provider(), &[], &Limits::default()).expect("render");
        assert_eq!(out.data.keys().collect::<Vec<_>>(), ["url"]);
        assert_eq!(text(&out.data["url"]), "postgres://app:s3cret@db");
        template.merge_policy = Some(TemplateMergePolicy::Merge);
        let out = apply(&template, &provider(), &[], &Limits::default()).expect("render");
        assert_eq!(out.data.len(), 4);
        assert_eq!(text(&out.data["user"]), "app");
    }

    #[test]
    fn a_template_without_data_templates_keeps_provider_data_and_sets_type_and_metadata() {
        let template = ExternalSecretTemplate {
            type_: Some("kubernetes.io/basic-auth".into()),
            metadata: Some(TemplateMetadata {
                labels: Some([("owner".to_owned(), "{{ .user }}".to_owned())].into()),
                annotations: Some([("plain".to_owned(), "yes".to_owned())].into()),
                finalizers: Some(vec!["example.com/keep".to_owned()]),
            }),
            ..Default::default()
        };
        let out = apply(&template, &provider(), &[], &Limits::default()).expect("render");
        assert_eq!(out.data.len(), 3);
        assert_eq!(out.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert_eq!(out.labels["owner"], "app");
        assert_eq!(out.annotations["plain"], "yes");
        assert_eq!(out.finalizers, ["example.com/keep"]);
    }

    #[test]
    fn template_data_wins_over_template_from_which_wins_over_provider_data() {
        let template = ExternalSecretTemplate {
            merge_policy: Some(TemplateMergePolicy::Merge),
            data: Some([("user".to_owned(), "from-data".to_owned())].into()),
            template_from: Some(vec![Default::default()]),
            ..Default::default()
        };
        let sources = [
            source(
                Target::Data,
                vec![
                    ("user", "from-source", TemplateScope::Values),
                    ("host", "{{ .host }}.internal", TemplateScope::Values),
                ],
            ),
            source(
                Target::Labels,
                vec![(
                    "",
                    "team: {{ .user | upper }}\ntier: db",
                    TemplateScope::KeysAndValues,
                )],
            ),
        ];
        let out = apply(&template, &provider(), &sources, &Limits::default()).expect("render");
        assert_eq!(text(&out.data["user"]), "from-data");
        assert_eq!(text(&out.data["host"]), "db.internal");
        assert_eq!(text(&out.data["password"]), "s3cret");
        assert_eq!(out.labels["team"], "APP");
        assert_eq!(out.labels["tier"], "db");
    }

    #[test]
    fn values_decoding_applies_to_rendered_values() {
        let template = ExternalSecretTemplate {
            template_from: Some(vec![Default::default()]),
            ..Default::default()
        };
        let mut s = source(
            Target::Data,
            vec![("bin", "{{ \"aGVsbG8=\" }}", TemplateScope::Values)],
        );
        s.decoding = DecodingStrategy::Base64;
        let out = apply(&template, &provider(), &[s], &Limits::default()).expect("render");
        assert_eq!(text(&out.data["bin"]), "hello");
    }

    #[test]
    fn errors_name_the_place_and_never_a_value() {
        let template = ExternalSecretTemplate {
            data: Some(
                [(
                    "bad".to_owned(),
                    "line one\n{{ .password | nosuchfunction }}".to_owned(),
                )]
                .into(),
            ),
            ..Default::default()
        };
        let err = apply(&template, &provider(), &[], &Limits::default())
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("data key bad"), "{err}");
        assert!(err.contains("2:"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let missing = ExternalSecretTemplate {
            data: Some([("k".to_owned(), "{{ .nope }}".to_owned())].into()),
            ..Default::default()
        };
        assert!(apply(&missing, &provider(), &[], &Limits::default()).is_err());
    }

    #[test]
    fn transform_renders_the_key() {
        let key = transform_key(0, "app/{{ .value | lower }}", "DB_USER", &Limits::default());
        assert_eq!(key.expect("key"), "app/db_user");
        assert!(transform_key(1, "{{ .value", "k", &Limits::default()).is_err());
    }
}
