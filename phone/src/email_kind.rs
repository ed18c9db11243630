//! What kind of address a lead's email is: a free-mail inbox, a company's
//! own domain, or none. Providers find phones for the two at very different
//! rates, so the waterfall's adaptive order and the sandbox both segment by it.

/// The kind of a lead's email address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmailKind {
    /// A mailbox at a free-mail provider (gmail.com, web.de, …).
    Free,
    /// Any other domain: the company's own.
    Corporate,
    /// No email, or text that is not an address.
    None,
}

impl EmailKind {
    /// The kind of `email`: its domain (after the last `@`, trimmed and
    /// without a trailing dot, any case) looked up in the bundled list of
    /// free-mail domains.
    pub fn of(email: &str) -> Self {
        let Some((local, domain)) = email.trim().rsplit_once('@') else {
            return EmailKind::None;
        };
        let domain = domain.trim_end_matches('.');
        if local.is_empty() || domain.is_empty() {
            return EmailKind::None;
        }
        let mut lower = [0u8; 64];
        let Some(lower) = lower.get_mut(..domain.len()) else {
            // Longer than any free-mail domain.
            return EmailKind::Corporate;
        };
        lower.copy_from_slice(domain.as_bytes());
        lower.make_ascii_lowercase();
        match std::str::from_utf8(lower) {
            Ok(domain) if FREE_MAIL.binary_search(&domain).is_ok() => EmailKind::Free,
            _ => EmailKind::Corporate,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EmailKind::Free => "free",
            EmailKind::Corporate => "corporate",
            EmailKind::None => "none",
        }
    }
}

/// Free-mail domains, sorted (a test keeps them so): the large international
/// ones and each big market's own.
const FREE_MAIL: &[&str] = &[
    "163.com",
    "aim.com",
    "aol.com",
    "bigpond.com",
    "bluewin.ch",
    "btinternet.com",
    "comcast.net",
    "email.cz",
    "fastmail.com",
    "free.fr",
    "freenet.de",
    "gmail.com",
    "gmx.at",
    "gmx.ch",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "googlemail.com",
    "hey.com",
    "hotmail.co.uk",
    "hotmail.com",
    "hotmail.de",
    "hotmail.es",
    "hotmail.fr",
    "hotmail.it",
    "icloud.com",
    "inbox.ru",
    "interia.pl",
    "laposte.net",
    "libero.it",
    "live.com",
    "live.de",
    "live.fr",
    "mac.com",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "naver.com",
    "o2.pl",
    "onet.pl",
    "orange.fr",
    "outlook.com",
    "outlook.de",
    "outlook.es",
    "outlook.fr",
    "pm.me",
    "proton.me",
    "protonmail.com",
    "qq.com",
    "rediffmail.com",
    "seznam.cz",
    "sfr.fr",
    "sky.com",
    "t-online.de",
    "terra.com.br",
    "tutanota.com",
    "uol.com.br",
    "verizon.net",
    "virgilio.it",
    "wanadoo.fr",
    "web.de",
    "wp.pl",
    "yahoo.co.jp",
    "yahoo.co.uk",
    "yahoo.com",
    "yahoo.com.br",
    "yahoo.de",
    "yahoo.es",
    "yahoo.fr",
    "yahoo.in",
    "yahoo.it",
    "yandex.com",
    "yandex.ru",
    "ymail.com",
    "zoho.com",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_lowercase_and_without_repeats() {
        assert!(FREE_MAIL.windows(2).all(|w| w[0] < w[1]));
        assert!(
            FREE_MAIL
                .iter()
                .all(|d| d.len() <= 64 && *d == d.to_lowercase())
        );
    }

    #[test]
    fn kinds_of_addresses() {
        for (email, kind) in [
            ("ana@gmail.com", EmailKind::Free),
            ("  Ana@GMAIL.com. ", EmailKind::Free),
            ("jo@web.de", EmailKind::Free),
            ("jo@acme.de", EmailKind::Corporate),
            ("jo@mail.gmail.com", EmailKind::Corporate),
            ("a\"@\"b@yahoo.fr", EmailKind::Free),
            ("", EmailKind::None),
            ("not an address", EmailKind::None),
            ("@gmail.com", EmailKind::None),
            ("jo@", EmailKind::None),
            (&format!("jo@{}.com", "x".repeat(300)), EmailKind::Corporate),
            ("jo@gmäil.com", EmailKind::Corporate),
        ] {
            assert_eq!(EmailKind::of(email), kind, "{email}");
        }
    }
}
