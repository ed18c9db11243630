//! Twilio Lookup v2: `GET /v2/PhoneNumbers/{e164}?Fields=line_type_intelligence`
//! with basic auth (Account SID and auth token, or API key and secret).

use reqwest::{Client, RequestBuilder, StatusCode};

use crate::provider::{LineType, LineTypeProvider, Secret, json_body, text_of, unexpected};

#[derive(Debug)]
pub struct Twilio {
    base_url: String,
    user: Secret,
    password: Secret,
}

impl Twilio {
    pub fn new(base_url: &str, user: Secret, password: Secret) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            user,
            password,
        }
    }
}

impl LineTypeProvider for Twilio {
    fn request(&self, http: &Client, e164: &str) -> RequestBuilder {
        let number: String = url::form_urlencoded::byte_serialize(e164.as_bytes()).collect();
        http.get(format!("{}/v2/PhoneNumbers/{number}", self.base_url))
            .query(&[("Fields", "line_type_intelligence")])
            .basic_auth(self.user.expose(), Some(self.password.expose()))
    }

    fn read(&self, status: StatusCode, body: &[u8]) -> Result<Option<LineType>, String> {
        match status {
            // Twilio answers 404 for a number it cannot parse at all.
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => {
                let json = json_body(status, body)?;
                if json.get("valid").and_then(|v| v.as_bool()) != Some(true) {
                    return Ok(None);
                }
                let lti = json.get("line_type_intelligence");
                let field = |name: &str| text_of(lti.and_then(|l| l.get(name)));
                Ok(Some(LineType {
                    line_type: field("type"),
                    carrier_name: field("carrier_name"),
                    mcc: field("mobile_country_code"),
                    mnc: field("mobile_network_code"),
                }))
            }
            _ => Err(unexpected(status, body)),
        }
    }
}
