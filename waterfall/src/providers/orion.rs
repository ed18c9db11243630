//! Orion Connect: `POST /v1/phone/find {email, full_name, company_domain}`
//! with a bearer token; `200 {"phone","confidence"}` or `404` for a miss.

use reqwest::{Client, RequestBuilder, StatusCode};

use super::Endpoint;
use crate::provider::{Answer, LeadQuery, Provider, Secret, json_body, text_of, unexpected};

#[derive(Debug)]
pub struct Orion(Endpoint);

impl Orion {
    pub fn new(base_url: &str, key: Secret) -> Self {
        Self(Endpoint::new(base_url, "/v1/phone/find", key))
    }
}

impl Provider for Orion {
    fn request(&self, http: &Client, lead: &LeadQuery) -> RequestBuilder {
        let body = serde_json::json!({
            "email": lead.email,
            "full_name": lead.full_name,
            "company_domain": lead.company_domain(),
        });
        self.0.post_json(http, &body).bearer_auth(self.0.key())
    }

    fn read(&self, status: StatusCode, body: &[u8]) -> Result<Answer, String> {
        match status {
            StatusCode::NOT_FOUND => Ok(Answer::Miss),
            StatusCode::OK => {
                let json = json_body(status, body)?;
                Ok(match text_of(json.get("phone")) {
                    Some(phone) => Answer::Hit {
                        phone,
                        country: None,
                    },
                    None => Answer::Miss,
                })
            }
            _ => Err(unexpected(status, body)),
        }
    }
}
