//! Shared AWS SDK configuration (real AWS, or a local endpoint such as `moto_server` in tests).

/// Environment variable naming a local AWS endpoint (tests, local runs); unset in Lambda.
pub const ENDPOINT_ENV: &str = "TB_AWS_ENDPOINT";

/// Loads the SDK config from the environment; with `endpoint` set, points every client at it and
/// uses dummy static credentials and `us-east-1` unless the environment provides others.
pub async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                "test", "test", None, None, "static-test",
            ));
        }
        if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
            loader = loader.region(aws_config::Region::new("us-east-1"));
        }
    }
    loader.load().await
}

/// [`sdk_config`] with the endpoint from [`ENDPOINT_ENV`], if set.
pub async fn sdk_config_from_env() -> aws_config::SdkConfig {
    let endpoint = std::env::var(ENDPOINT_ENV).ok().filter(|s| !s.is_empty());
    sdk_config(endpoint.as_deref()).await
}
