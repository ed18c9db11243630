//! Astra Dialer: `GET /lookup?email=&name=&domain=` with `X-Api-Key`;
//! `{"status":"found","phones":[{number, type, country}]}` or `{"status":"not_found"}`.

use reqwest::{Client, RequestBuilder, StatusCode};

use super::Endpoint;
use crate::provider::{Answer, LeadQuery, Provider, Secret, json_body, text_of, unexpected};

#[derive(Debug)]
pub struct Astra(Endpoint);

impl Astra {
    pub fn new(base_url: &str, key: Secret) -> Self {
        Self(Endpoint::new(base_url, "/lookup", key))
    }
}

impl Provider for Astra {
    fn request(&self, http: &Client, lead: &LeadQuery) -> RequestBuilder {
        self.0
            .get(http)
            .query(&[
                ("email", lead.email.as_str()),
                ("name", lead.full_name.as_str()),
                ("domain", lead.company_domain()),
            ])
            .header("x-api-key", self.0.key())
    }

    fn read(&self, status: StatusCode, body: &[u8]) -> Result<Answer, String> {
        if status != StatusCode::OK {
            return Err(unexpected(status, body));
        }
        let json = json_body(status, body)?;
        match json.get("status").and_then(|s| s.as_str()) {
            Some("found") => {
                let phones = json.get("phones").and_then(|p| p.as_array());
                // Prefer a mobile number; Astra lists them in its own order.
                let best = phones.and_then(|phones| {
                    phones
                        .iter()
                        .find(|p| p.get("type").and_then(|t| t.as_str()) == Some("mobile"))
                        .or_else(|| phones.first())
                });
                Ok(match best.and_then(|p| text_of(p.get("number"))) {
                    Some(phone) => Answer::Hit {
                        phone,
                        country: best.and_then(|p| text_of(p.get("country"))),
                    },
                    None => Answer::Miss,
                })
            }
            Some("not_found") => Ok(Answer::Miss),
            _ => Err(unexpected(status, body)),
        }
    }
}
