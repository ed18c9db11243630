//! Request templates of config-declared providers: text with `{field}`
//! placeholders, checked when the config loads.

use std::fmt;

/// A lead field (or the API key) a template can insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var {
    Email,
    FullName,
    FirstName,
    LastName,
    CompanyDomain,
    Country,
    ApiKey,
}

impl Var {
    const ALL: [(&'static str, Var); 7] = [
        ("email", Var::Email),
        ("full_name", Var::FullName),
        ("first_name", Var::FirstName),
        ("last_name", Var::LastName),
        ("company_domain", Var::CompanyDomain),
        ("country", Var::Country),
        ("api_key", Var::ApiKey),
    ];
}

/// How inserted values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escape {
    /// Percent-encoded, for paths and query strings.
    Url,
    /// JSON string content (the template supplies the quotes).
    Json,
    /// As is, for headers.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// A parsed template. `{name}` with a known name is a placeholder; any other
/// brace (as in a JSON body) is text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template(Vec<Piece>);

/// A placeholder the template language does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnknownPlaceholder(String);

impl fmt::Display for UnknownPlaceholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = Var::ALL.iter().map(|(n, _)| *n).collect();
        write!(
            f,
            "unknown placeholder `{{{}}}`; known: {}",
            self.0,
            known.join(", ")
        )
    }
}

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Self, UnknownPlaceholder> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name_len = after
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            if name_len > 0 && after[name_len..].starts_with('}') {
                let name = &after[..name_len];
                let var = Var::ALL
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| UnknownPlaceholder(name.to_string()))?;
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Var(var));
                rest = &after[name_len + 1..];
            } else {
                literal.push('{');
                rest = after;
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template(pieces))
    }

    /// The template with each placeholder replaced by `value(var)`, escaped.
    pub(crate) fn render<'a>(&self, escape: Escape, value: impl Fn(Var) -> &'a str) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => {
                    let raw = value(*v);
                    match escape {
                        Escape::None => out.push_str(raw),
                        Escape::Url => {
                            out.extend(url::form_urlencoded::byte_serialize(raw.as_bytes()))
                        }
                        Escape::Json => {
                            let quoted = serde_json::Value::from(raw).to_string();
                            out.push_str(&quoted[1..quoted.len() - 1]);
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: Var) -> &'static str {
        match v {
            Var::Email => "a+b@x.com",
            Var::FullName => "Zoë \"Z\" Li",
            _ => "",
        }
    }

    #[test]
    fn placeholders_are_escaped_for_where_they_go() {
        let path = Template::parse("/find?email={email}&n={full_name}").unwrap();
        assert_eq!(
            path.render(Escape::Url, values),
            "/find?email=a%2Bb%40x.com&n=Zo%C3%AB+%22Z%22+Li"
        );
        let body =
            Template::parse(r#"{"contact":{"email":"{email}","name":"{full_name}"}}"#).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&body.render(Escape::Json, values)).unwrap();
        assert_eq!(json["contact"]["name"], "Zoë \"Z\" Li");
    }

    #[test]
    fn an_unknown_placeholder_is_named() {
        let err = Template::parse("/x?q={mail}").unwrap_err().to_string();
        assert!(err.contains("{mail}") && err.contains("email"), "{err}");
    }
}
