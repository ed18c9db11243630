//! Nimbus Lookup: `POST /api/v2/enrich {"contact":{…}}` with `X-Nimbus-Key`;
//! `{"data":{"mobile_phone","direct_dial"},"credits_used"}`, `{"data":{}}` for a miss.

use reqwest::{Client, RequestBuilder, StatusCode};

use super::Endpoint;
use crate::provider::{Answer, LeadQuery, Provider, Secret, json_body, text_of, unexpected};

#[derive(Debug)]
pub struct Nimbus(Endpoint);

impl Nimbus {
    pub fn new(base_url: &str, key: Secret) -> Self {
        Self(Endpoint::new(base_url, "/api/v2/enrich", key))
    }
}

impl Provider for Nimbus {
    fn request(&self, http: &Client, lead: &LeadQuery) -> RequestBuilder {
        let body = serde_json::json!({
            "contact": {
                "email": lead.email,
                "full_name": lead.full_name,
                "first_name": lead.first_name(),
                "last_name": lead.last_name(),
                "company_domain": lead.company_domain(),
                "country": lead.country,
            }
        });
        self.0
            .post_json(http, &body)
            .header("x-nimbus-key", self.0.key())
    }

    fn read(&self, status: StatusCode, body: &[u8]) -> Result<Answer, String> {
        if status != StatusCode::OK {
            return Err(unexpected(status, body));
        }
        let json = json_body(status, body)?;
        let Some(data) = json.get("data") else {
            return Err(unexpected(status, body));
        };
        let phone = text_of(data.get("mobile_phone")).or_else(|| text_of(data.get("direct_dial")));
        Ok(match phone {
            Some(phone) => Answer::Hit {
                phone,
                country: None,
            },
            None => Answer::Miss,
        })
    }
}
