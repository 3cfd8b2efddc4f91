//! Reads the ConfigMaps and Secrets that `target.template.templateFrom` names, from the
//! ExternalSecret's own namespace only (ESO's rule; a template can never reach into another
//! namespace), into the pure template step's [`Source`]s.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use lockstep_api::external_secret::{ExternalSecretTemplate, TemplateScope};
use lockstep_api::value::SecretValue;

use super::template::{Source, SourceTemplate, Target};
use crate::error::{Error, Result};

/// Resolves every `templateFrom` entry in order. Template text read from Secrets is added to
/// `seen`, so error messages are scrubbed of it too.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    template: &ExternalSecretTemplate,
    seen: &mut Vec<SecretValue>,
) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for entry in template.template_from.iter().flatten() {
        let target = Target::parse(entry.target.as_deref())?;
        let decoding = entry.values_decoding_strategy.unwrap_or_default();
        let mut templates = Vec::new();
        if let Some(cm) = &entry.config_map {
            let found = Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .get_opt(&cm.name)
                .await?
                .ok_or_else(|| {
                    Error::Template(format!("templateFrom configMap {:?} not found", cm.name))
                })?;
            for item in &cm.items {
                let text = found
                    .data
                    .as_ref()
                    .and_then(|d| d.get(&item.key))
                    .ok_or_else(|| {
                        Error::Template(format!(
                            "error in configmap {}: missing key {}",
                            cm.name, item.key
                        ))
                    })?;
                templates.push(SourceTemplate {
                    origin: format!("configMap {}, key {}", cm.name, item.key),
                    key: item.key.clone(),
                    text: SecretValue::from(text.clone()),
                    scope: item.template_as.unwrap_or_default(),
                });
            }
        }
        if let Some(sec) = &entry.secret {
            let mut found = Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(&sec.name)
                .await?
                .ok_or_else(|| {
                    Error::Template(format!("templateFrom secret {:?} not found", sec.name))
                })?;
            let mut data = found.data.take().unwrap_or_default();
            for item in &sec.items {
                let text = data.remove(&item.key).ok_or_else(|| {
                    Error::Template(format!(
                        "error in secret {}: missing key {}",
                        sec.name, item.key
                    ))
                })?;
                let text = SecretValue::from(text.0);
                seen.push(text.clone());
                templates.push(SourceTemplate {
                    origin: format!("secret {}, key {}", sec.name, item.key),
                    key: item.key.clone(),
                    text,
                    scope: item.template_as.unwrap_or_default(),
                });
            }
            // The rest of the Secret's data is wiped when dropped.
            for (_, v) in data {
                drop(SecretValue::from(v.0));
            }
        }
        if let Some(literal) = &entry.literal {
            templates.push(SourceTemplate {
                origin: "literal".into(),
                key: String::new(),
                text: SecretValue::from(literal.clone()),
                scope: TemplateScope::KeysAndValues,
            });
        }
        sources.push(Source {
            target,
            decoding,
            templates,
        });
    }
    Ok(sources)
}
