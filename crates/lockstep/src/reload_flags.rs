//! Reloader's flag values as Reloader spells them, turned into the reload controller's options.

use lockstep_api::reloader::ResourceKind;

/// `--resources-to-ignore`: `configMaps` or `secrets` (any case); both at once is an error, as
/// in Reloader (nothing would be left to watch).
pub fn ignored_resources(values: &[String]) -> anyhow::Result<Vec<ResourceKind>> {
    let mut kinds = Vec::new();
    for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        match v.to_ascii_lowercase().as_str() {
            "configmaps" => kinds.push(ResourceKind::ConfigMap),
            "secrets" => kinds.push(ResourceKind::Secret),
            _ => anyhow::bail!("--resources-to-ignore: '{v}' is neither configMaps nor secrets"),
        }
    }
    kinds.dedup();
    if kinds.contains(&ResourceKind::ConfigMap) && kinds.contains(&ResourceKind::Secret) {
        anyhow::bail!(
            "--resources-to-ignore: ignoring both configMaps and secrets leaves nothing to reload on"
        );
    }
    Ok(kinds)
}

/// `--ignored-workload-types`: `jobs` and/or `cronjobs` (any case), as workload kinds.
pub fn ignored_workload_kinds(values: &[String]) -> anyhow::Result<Vec<String>> {
    values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| match v.to_ascii_lowercase().as_str() {
            "jobs" => Ok("Job".to_owned()),
            "cronjobs" => Ok("CronJob".to_owned()),
            _ => anyhow::bail!("--ignored-workload-types: '{v}' is neither jobs nor cronjobs"),
        })
        .collect()
}

/// A label selector in Kubernetes syntax, with Reloader's legacy forms converted: `key:value`
/// becomes `key=value` and `key:*` becomes `key` (exists).
pub fn selector(value: &str) -> String {
    // Set-based terms hold commas inside parentheses: Kubernetes syntax, left alone.
    if value.contains('(') {
        return value.trim().to_owned();
    }
    value
        .split(',')
        .map(str::trim)
        .filter(|term| !term.is_empty())
        .map(|term| {
            if term.contains(['=', '!']) {
                return term.to_owned();
            }
            match term.split_once(':') {
                Some((key, "*")) => key.trim().to_owned(),
                Some((key, value)) => format!("{}={}", key.trim(), value.trim()),
                None => term.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_selectors_are_converted() {
        assert_eq!(selector("team:payments"), "team=payments");
        assert_eq!(selector("reload:*"), "reload");
        assert_eq!(selector("a:b, c:*"), "a=b,c");
        assert_eq!(selector("env in (prod,dev)"), "env in (prod,dev)");
        assert_eq!(selector("a=b,!c"), "a=b,!c");
        assert_eq!(selector("tier!=web"), "tier!=web");
    }

    #[test]
    fn resources_to_ignore() {
        assert_eq!(
            ignored_resources(&["configMaps".into()]).unwrap(),
            vec![ResourceKind::ConfigMap]
        );
        assert_eq!(
            ignored_resources(&["SECRETS".into()]).unwrap(),
            vec![ResourceKind::Secret]
        );
        assert!(ignored_resources(&["secrets".into(), "configmaps".into()]).is_err());
        assert!(ignored_resources(&["pods".into()]).is_err());
    }

    #[test]
    fn workload_types() {
        assert_eq!(
            ignored_workload_kinds(&["jobs".into(), "CronJobs".into()]).unwrap(),
            vec!["Job".to_owned(), "CronJob".to_owned()]
        );
        assert!(ignored_workload_kinds(&["deployments".into()]).is_err());
    }
}
