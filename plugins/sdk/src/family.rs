//! Image families: by a tag key (family = the tag's value) or by a name regex with one
//! capture group (family = the capture), and the host query that finds a family's members.

use crate::prelude::*;
use regex::Regex;
use serde::Deserialize;

/// How the policy file names a family.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum FamilySpec {
    /// The family is the value of this tag.
    Tag(String),
    /// The family is the first capture group of this regex on the image name.
    NameRegex(String),
}

/// A compiled family rule.
#[derive(Debug, Clone)]
pub enum Family {
    Tag(String),
    Name { regex: Regex, prefix: Option<String> },
}

impl Family {
    /// Compiles a spec, checking the tag key is non-empty and the regex has exactly one group.
    pub fn compile(spec: &FamilySpec) -> Result<Self, String> {
        match spec {
            FamilySpec::Tag(key) if key.trim().is_empty() => Err("family.tag must not be empty".into()),
            FamilySpec::Tag(key) => Ok(Family::Tag(key.clone())),
            FamilySpec::NameRegex(pattern) => {
                let regex =
                    Regex::new(pattern).map_err(|err| format!("family.name_regex `{pattern}` is invalid: {err}"))?;
                if regex.captures_len() != 2 {
                    return Err(format!(
                        "family.name_regex `{pattern}` must have exactly one capture group (the family), found {}",
                        regex.captures_len() - 1
                    ));
                }
                Ok(Family::Name { prefix: literal_prefix(pattern), regex })
            }
        }
    }

    /// The image's family, or `None` when it belongs to none (missing or empty tag, no match).
    pub fn of(&self, image: &Image) -> Option<String> {
        let value = match self {
            Family::Tag(key) => image.tag(key)?.to_string(),
            Family::Name { regex, .. } => name_family(regex, &image.name)?.to_string(),
        };
        (!value.is_empty()).then_some(value)
    }

    /// Members of `family` in one account and region (narrowed on the host where possible).
    pub fn members(&self, account: &str, region: &str, family: &str) -> Result<Vec<Image>, PolicyError> {
        let found =
            query_images(&self.query(account, region, family)).map_err(|err| failed(account, region, family, err))?;
        Ok(found.into_iter().filter(|i| self.of(i).as_deref() == Some(family)).collect())
    }

    /// Summaries of the members of `family` in one account and region: what ranking reads,
    /// at a fraction of the cost of whole images.
    pub fn member_summaries(
        &self,
        account: &str,
        region: &str,
        family: &str,
    ) -> Result<Vec<ImageSummary>, PolicyError> {
        let found = query_summaries(&self.query(account, region, family))
            .map_err(|err| failed(account, region, family, err))?;
        Ok(match self {
            // The host matched the tag's value exactly.
            Family::Tag(_) => found,
            Family::Name { regex, .. } => {
                found.into_iter().filter(|s| name_family(regex, &s.name) == Some(family)).collect()
            }
        })
    }

    /// How many members of `family` in `image`'s account and region that rank (see
    /// `rank_by_age`) are newer than `image`, answered by the host for a tag family; `None`
    /// for a name regex family, whose members only the plugin can tell (rank its
    /// `member_summaries`).
    pub fn newer_on_host(&self, image: &Image, family: &str) -> Option<Result<usize, PolicyError>> {
        let Family::Tag(_) = self else {
            return None;
        };
        let query = self.query(&image.account, &image.region, family);
        Some(
            rank_by_age(&query, &image.id)
                .map(|rank| rank.newer as usize)
                .map_err(|err| failed(&image.account, &image.region, family, err)),
        )
    }

    /// The host query that finds `family`'s members in one account and region, or a
    /// superset of them (a name regex narrows only to its literal prefix).
    fn query(&self, account: &str, region: &str, family: &str) -> ImageQuery {
        let mut query = ImageQuery::location(account, region);
        match self {
            Family::Tag(key) => {
                query.tag_key = Some(key.clone());
                query.tag_value = Some(family.to_string());
            }
            Family::Name { prefix, .. } => query.name_prefix = prefix.clone(),
        }
        query
    }

    /// How the family is named in reasons: `family web (tag team)` or `family web`.
    pub fn describe(&self, family: &str) -> String {
        match self {
            Family::Tag(key) => format!("family {family} (tag {key})"),
            Family::Name { .. } => format!("family {family}"),
        }
    }
}

/// The family a name regex gives `name`: its capture group, if the name matches.
fn name_family<'n>(regex: &Regex, name: &'n str) -> Option<&'n str> {
    Some(regex.captures(name)?.get(1)?.as_str())
}

fn failed(account: &str, region: &str, family: &str, err: String) -> PolicyError {
    PolicyError::Failed(format!("querying family {family} in {account}/{region}: {err}"))
}

/// The literal text every match of an anchored regex starts with, to narrow the host query.
fn literal_prefix(pattern: &str) -> Option<String> {
    let rest = pattern.strip_prefix('^')?;
    if pattern.contains('|') {
        return None;
    }
    let mut prefix = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        let literal = match c {
            '\\' => match chars.next() {
                Some(n) if n.is_ascii_punctuation() => n,
                _ => break,
            },
            c if c.is_ascii_alphanumeric() || " -_/:@,=".contains(c) => c,
            _ => break,
        };
        if matches!(chars.peek(), Some('?' | '*' | '{')) {
            break;
        }
        prefix.push(literal);
    }
    (!prefix.is_empty()).then_some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefix_stops_at_the_first_pattern_character() {
        let cases = [
            ("^golden-(\\w+)-\\d+", Some("golden-")),
            ("^golden\\.web-(.+)", Some("golden.web-")),
            ("^golden-webs?-(.*)", Some("golden-web")),
            ("golden-(\\w+)", None),
            ("^(\\w+)-golden", None),
            ("^a-(x)|^b-(y)", None),
        ];
        for (pattern, want) in cases {
            assert_eq!(literal_prefix(pattern).as_deref(), want, "{pattern}");
        }
    }

    #[test]
    fn a_name_regex_without_exactly_one_group_is_rejected() {
        assert!(Family::compile(&FamilySpec::NameRegex("^golden-\\w+".into())).is_err());
        assert!(Family::compile(&FamilySpec::NameRegex("^(a)-(b)".into())).is_err());
        assert!(Family::compile(&FamilySpec::NameRegex("^golden-(\\w+)-".into())).is_ok());
        assert!(Family::compile(&FamilySpec::NameRegex("^golden-(".into())).is_err());
    }
}
