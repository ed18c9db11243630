//! A provider declared entirely in config (`kind = "http"`): request
//! templates in, JSON pointers out, so a new provider needs no code.

use reqwest::{Client, RequestBuilder, StatusCode};

use crate::config::{HttpContract, HttpMethod};
use crate::provider::{Answer, LeadQuery, Provider, Secret, json_body, text_of, unexpected};
use crate::template::{Escape, Template, Var};

#[derive(Debug)]
pub struct DeclaredProvider {
    base_url: String,
    key: Secret,
    method: HttpMethod,
    path: Template,
    headers: Vec<(String, Template)>,
    body: Option<Template>,
    contract: HttpContract,
}

impl DeclaredProvider {
    /// Templates were checked when the config loaded; a bad one here is a bug.
    pub fn new(base_url: &str, key: Secret, contract: HttpContract) -> Result<Self, String> {
        let parse = |t: &str| Template::parse(t).map_err(|e| e.to_string());
        Ok(Self {
            base_url: base_url.to_string(),
            key,
            method: contract.method,
            path: parse(&contract.path)?,
            headers: contract
                .headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), parse(v)?)))
                .collect::<Result<_, String>>()?,
            body: contract.body.as_deref().map(parse).transpose()?,
            contract,
        })
    }

    fn value<'a>(&'a self, lead: &'a LeadQuery) -> impl Fn(Var) -> &'a str {
        move |var| match var {
            Var::Email => lead.email.as_str(),
            Var::FullName => lead.full_name.as_str(),
            Var::FirstName => lead.first_name(),
            Var::LastName => lead.last_name(),
            Var::CompanyDomain => lead.company_domain(),
            Var::Country => lead.country(),
            Var::ApiKey => self.key.expose(),
        }
    }
}

impl Provider for DeclaredProvider {
    fn request(&self, http: &Client, lead: &LeadQuery) -> RequestBuilder {
        let url = super::join(
            &self.base_url,
            &self.path.render(Escape::Url, self.value(lead)),
        );
        let mut request = match self.method {
            HttpMethod::Get => http.get(url),
            HttpMethod::Post => http.post(url),
        };
        for (name, value) in &self.headers {
            request = request.header(name, value.render(Escape::None, self.value(lead)));
        }
        if let Some(body) = &self.body {
            request = request
                .header("content-type", "application/json")
                .body(body.render(Escape::Json, self.value(lead)));
        }
        request
    }

    fn read(&self, status: StatusCode, body: &[u8]) -> Result<Answer, String> {
        if self.contract.miss_statuses.contains(&status.as_u16()) {
            return Ok(Answer::Miss);
        }
        if !status.is_success() {
            return Err(unexpected(status, body));
        }
        let json = json_body(status, body)?;
        if let (Some(pointer), Some(equals)) =
            (&self.contract.miss_pointer, &self.contract.miss_equals)
            && json.pointer(pointer) == Some(equals)
        {
            return Ok(Answer::Miss);
        }
        Ok(match text_of(json.pointer(&self.contract.phone_pointer)) {
            Some(phone) => Answer::Hit {
                phone,
                country: self
                    .contract
                    .country_pointer
                    .as_deref()
                    .and_then(|p| text_of(json.pointer(p))),
            },
            None => Answer::Miss,
        })
    }
}
