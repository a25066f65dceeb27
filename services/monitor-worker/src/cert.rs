//! Reads the expiry (`notAfter`) of an X.509 certificate from its DER bytes: the few fields of the
//! TBS certificate before it are skipped, nothing else is parsed.

use chrono::{DateTime, NaiveDate, Utc};

/// One DER element: (tag, content, rest).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn digits(s: &[u8]) -> Option<u32> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// `UTCTime` (`YYMMDDHHMMSSZ`) or `GeneralizedTime` (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, t: &[u8]) -> Option<DateTime<Utc>> {
    let (year, rest) = match tag {
        0x17 if t.len() >= 12 => {
            let yy = digits(&t[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &t[2..])
        }
        0x18 if t.len() >= 14 => (digits(&t[..4])?, &t[4..]),
        _ => return None,
    };
    let field = |i: usize| digits(&rest[i..i + 2]);
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, field(0)?, field(2)?)?
        .and_hms_opt(field(4)?, field(6)?, field(8)?)
        .map(|t| t.and_utc())
}

/// The certificate's `notAfter`, or `None` when the bytes are not a certificate.
pub fn not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (0x30, cert, _) = element(der)? else { return None };
    let (0x30, tbs, _) = element(cert)? else { return None };
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2; // [0] version
    }
    rest = element(rest)?.2; // serialNumber
    rest = element(rest)?.2; // signature algorithm
    rest = element(rest)?.2; // issuer
    let (0x30, validity, _) = element(rest)? else { return None };
    let after_not_before = element(validity)?.2;
    let (tag, value, _) = element(after_not_before)?;
    time(tag, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_time_forms() {
        assert_eq!(time(0x17, b"300101120000Z"), "2030-01-01T12:00:00Z".parse().ok());
        assert_eq!(time(0x17, b"991231235959Z"), "1999-12-31T23:59:59Z".parse().ok());
        assert_eq!(time(0x18, b"20510615080910Z"), "2051-06-15T08:09:10Z".parse().ok());
        assert_eq!(time(0x18, b"2051"), None);
        assert_eq!(not_after(b"not a certificate"), None);
        assert_eq!(not_after(&[]), None);
    }
}
