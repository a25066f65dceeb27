//! Scrubbing a run's secret values out of everything it prints, before a line is stored or streamed:
//! the value itself and the forms a playbook is likely to print it in (JSON-escaped, base64, URL-encoded).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// What a secret is replaced with.
pub const MASK: &str = "********";
/// Shorter values are not scrubbed: masking every "1" or "ab" of the output would destroy it and
/// protect nothing.
pub const MIN_SECRET_LEN: usize = 4;

/// Every form of every secret of one run, longest first (so a value containing another is masked whole).
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    needles: Vec<String>,
}

impl Scrubber {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles = Vec::new();
        for s in secrets.into_iter().filter(|s| s.chars().count() >= MIN_SECRET_LEN) {
            needles.push(s.to_owned());
            if let Ok(json) = serde_json::to_string(s) {
                needles.push(json[1..json.len() - 1].to_owned());
            }
            needles.push(STANDARD.encode(s));
            needles.push(STANDARD.encode(s).trim_end_matches('=').to_owned());
            needles.push(URL_SAFE_NO_PAD.encode(s));
            needles.push(crate::percent_encode(s));
            // Multi-line secrets (keys, certificates) are printed line by line too.
            needles.extend(s.lines().filter(|l| l.trim().len() >= 16).map(|l| l.trim().to_owned()));
        }
        needles.retain(|n| n.len() >= MIN_SECRET_LEN);
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Self { needles }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `line` with every secret form masked.
    pub fn scrub(&self, line: &str) -> String {
        let mut out = line.to_owned();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_printed_form_of_a_secret_is_masked() {
        let secret = "s3cr\"et/pa ss";
        let s = Scrubber::new([secret, "ab"]);
        assert_eq!(s.scrub(&format!("password={secret}!")), format!("password={MASK}!"));
        assert_eq!(s.scrub(r#""msg": "s3cr\"et/pa ss""#), format!("\"msg\": \"{MASK}\""));
        assert_eq!(s.scrub(&format!("b64 {}", STANDARD.encode(secret))), format!("b64 {MASK}"));
        assert_eq!(s.scrub("url s3cr%22et%2Fpa%20ss"), format!("url {MASK}"));
        assert_eq!(s.scrub("short ab stays"), "short ab stays", "values under the minimum are left");
        assert!(Scrubber::new(["abc"]).is_empty());
    }

    #[test]
    fn a_secret_containing_another_is_masked_whole() {
        let s = Scrubber::new(["token", "token-and-more"]);
        assert_eq!(s.scrub("x token-and-more y token"), format!("x {MASK} y {MASK}"));
    }
}
