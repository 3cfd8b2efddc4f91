//! Checks the controller makes itself before syncing: the security-relevant admission rules
//! again (admission is not a security control: a CRD installed without them, or an object
//! stored before they existed, must not slip through), the rules too costly for CEL, and every
//! field Lockstep does not act on yet — never silently ignored.

use std::collections::BTreeSet;

use lockstep_api::external_secret::{CreationPolicy, DeletionPolicy, ExternalSecretSpec};

use crate::error::{Error, Result};

const SA_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";

/// Validates a spec; the first problem found is returned.
pub fn validate(spec: &ExternalSecretSpec) -> Result<()> {
    let target = spec.target.clone().unwrap_or_default();
    let creation = target.creation_policy.unwrap_or_default();
    let deletion = target.deletion_policy.unwrap_or_default();
    if deletion == DeletionPolicy::Delete
        && matches!(
            creation,
            CreationPolicy::Merge | CreationPolicy::None | CreationPolicy::CreateOrMerge
        )
    {
        return Err(Error::Invalid(
            "deletionPolicy=Delete must not be used when the controller doesn't own the secret. Please set creationPolicy=Owner".into(),
        ));
    }
    if deletion == DeletionPolicy::Merge && creation == CreationPolicy::None {
        return Err(Error::Invalid(
            "deletionPolicy=Merge must not be used with creationPolicy=None. There is no Secret to merge with".into(),
        ));
    }
    let data = spec.data.as_deref().unwrap_or_default();
    let data_from = spec.data_from.as_deref().unwrap_or_default();
    if data.is_empty() && data_from.is_empty() {
        return Err(Error::Invalid(
            "either data or dataFrom should be specified".into(),
        ));
    }
    if let Some(template) = &target.template {
        match template.type_.as_deref() {
            Some("bootstrap.kubernetes.io/token") => {
                return Err(Error::Invalid(
                    "template.type=\"bootstrap.kubernetes.io/token\" is not allowed".into(),
                ));
            }
            Some(SA_TOKEN_TYPE) => {
                let annotated = template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.annotations.as_ref())
                    .is_some_and(|a| a.contains_key(SA_NAME_ANNOTATION));
                let templated = template.template_from.iter().flatten().any(|t| {
                    t.target
                        .as_deref()
                        .is_some_and(|t| t.eq_ignore_ascii_case("annotations"))
                });
                if annotated || templated {
                    return Err(Error::Invalid(format!(
                        "template.type={SA_TOKEN_TYPE:?} with a service-account annotation is not allowed"
                    )));
                }
            }
            _ => {}
        }
        let secret_target = target
            .manifest
            .as_ref()
            .is_none_or(|m| m.api_version == "v1" && m.kind == "Secret");
        if secret_target {
            for t in template.template_from.iter().flatten() {
                let ok = t.target.as_deref().is_none_or(|t| {
                    t.is_empty()
                        || ["data", "annotations", "labels"]
                            .iter()
                            .any(|a| t.eq_ignore_ascii_case(a))
                });
                if !ok {
                    return Err(Error::Invalid(
                        "templateFrom target is not allowed when targeting a Secret, must be one of \"Data\", \"Annotations\" or \"Labels\"".into(),
                    ));
                }
            }
        }
    }
    for (i, entry) in data_from.iter().enumerate() {
        let generator = entry
            .source_ref
            .as_ref()
            .is_some_and(|s| s.generator_ref.is_some());
        let set = usize::from(entry.extract.is_some())
            + usize::from(entry.find.is_some())
            + usize::from(generator);
        if set > 1 {
            return Err(Error::Invalid(
                "extract, find, or generatorRef cannot be set at the same time".into(),
            ));
        }
        if set == 0 && entry.source_ref.is_none() {
            return Err(Error::Invalid(format!(
                "spec.dataFrom[{i}]: either extract, find, or sourceRef must be set"
            )));
        }
    }
    if deletion == DeletionPolicy::Retain {
        let mut seen = BTreeSet::new();
        for d in data {
            if !seen.insert(d.secret_key.as_str()) {
                return Err(Error::Invalid(format!(
                    "duplicate secretKey found: {}",
                    d.secret_key
                )));
            }
        }
    }
    unsupported(spec)
}

/// Fields Lockstep keeps in the schema but does not act on yet.
fn unsupported(spec: &ExternalSecretSpec) -> Result<()> {
    let target = spec.target.clone().unwrap_or_default();
    let not_yet = |field: String| Err(Error::Unsupported(field));
    if target.manifest.is_some() {
        return not_yet("spec.target.manifest".into());
    }
    if spec.sync_windows.is_some() {
        return not_yet("spec.syncWindows".into());
    }
    for (i, d) in spec.data.iter().flatten().enumerate() {
        if d.source_ref
            .as_ref()
            .is_some_and(|s| s.generator_ref.is_some())
        {
            return not_yet(format!("spec.data[{i}].sourceRef.generatorRef"));
        }
    }
    for (i, d) in spec.data_from.iter().flatten().enumerate() {
        if d.source_ref
            .as_ref()
            .is_some_and(|s| s.generator_ref.is_some())
        {
            return not_yet(format!("spec.dataFrom[{i}].sourceRef.generatorRef"));
        }
    }
    Ok(())
}

/// A condition reason that names an unsupported field: `spec.target.template` becomes
/// `UnsupportedTargetTemplate`.
pub fn unsupported_reason(field: &str) -> String {
    let mut reason = String::from("Unsupported");
    for part in field.trim_start_matches("spec.").split('.') {
        let name = part.split('[').next().unwrap_or_default();
        let mut chars = name.chars();
        if let Some(first) = chars.next() {
            reason.push(first.to_ascii_uppercase());
            reason.extend(chars);
        }
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_field() {
        assert_eq!(
            unsupported_reason("spec.target.template"),
            "UnsupportedTargetTemplate"
        );
        assert_eq!(
            unsupported_reason("spec.dataFrom[0].rewrite[1].transform"),
            "UnsupportedDataFromRewriteTransform"
        );
    }

    #[test]
    fn security_rules_are_checked_again() {
        let spec: ExternalSecretSpec = serde_json::from_value(serde_json::json!({
            "data": [{ "secretKey": "k", "remoteRef": { "key": "r" } }],
            "target": { "template": { "type": "kubernetes.io/service-account-token",
                "templateFrom": [{ "literal": "a: b", "target": "Annotations" }] } }
        }))
        .unwrap();
        assert!(matches!(validate(&spec), Err(Error::Invalid(_))));
        let spec: ExternalSecretSpec = serde_json::from_value(serde_json::json!({
            "data": [{ "secretKey": "k", "remoteRef": { "key": "r" } }],
            "target": { "template": { "templateFrom": [{ "literal": "x", "target": "type" }] } }
        }))
        .unwrap();
        assert!(matches!(validate(&spec), Err(Error::Invalid(_))));
    }

    #[test]
    fn duplicate_keys_only_with_retain() {
        let dup = serde_json::json!([
            { "secretKey": "k", "remoteRef": { "key": "a" } },
            { "secretKey": "k", "remoteRef": { "key": "b" } }
        ]);
        let spec: ExternalSecretSpec =
            serde_json::from_value(serde_json::json!({ "data": dup })).unwrap();
        assert!(validate(&spec).is_err());
        let spec: ExternalSecretSpec = serde_json::from_value(
            serde_json::json!({ "data": dup, "target": { "deletionPolicy": "Merge" } }),
        )
        .unwrap();
        assert!(validate(&spec).is_ok());
    }
}
