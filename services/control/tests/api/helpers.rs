//! `spawn_app`: the `/v1` API on port 0 over its own fresh database, and a client that
//! speaks for one caller (anonymous, a browser session, or an API token).

use std::net::TcpListener;
use std::str::FromStr;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use control::crypto::SecretsKey;
use control::mail::{Mail, MailLinks, MemoryMailer};
use control::routes::{ControlSettings, ControlState};
use control::service::Control;
use reqwest::header::{AUTHORIZATION, COOKIE, HeaderMap, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use tenancy::AddressPolicy;

pub const PASSWORD: &str = "correct horse battery staple";

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    /// The test's own database, for checking what was (not) written.
    pub pool: PgPool,
    /// The key app secrets are sealed with, for running what reads them (the webhook sender).
    pub secrets: SecretsKey,
    /// The control plane behind the API (for holding its password-hash slots).
    pub control: Control,
    /// Every mail the control plane sent (verification, password reset).
    pub mailer: MemoryMailer,
    server: ServerHandle,
    _database: TestDatabase,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(ControlSettings::default()).await
}

pub async fn spawn_app_with(settings: ControlSettings) -> TestApp {
    spawn_app_with_control(settings, |control| control).await
}

/// With `--webhooks-allow-private`: webhooks may point at the test's local receivers.
pub async fn spawn_app_allowing_private_webhooks() -> TestApp {
    spawn_app_with_control(ControlSettings::default(), |control| {
        control.with_webhook_addresses(AddressPolicy::AllowPrivate)
    })
    .await
}

/// The API with at most `hashes` password hashes at once, each waiting `wait` for a slot.
pub async fn spawn_app_with_hash_limit(hashes: usize, wait: std::time::Duration) -> TestApp {
    spawn_app_with_control(ControlSettings::default(), |control| {
        control.with_password_hash_limit(hashes, wait)
    })
    .await
}

async fn spawn_app_with_control(
    settings: ControlSettings,
    adjust: impl FnOnce(Control) -> Control,
) -> TestApp {
    spawn_app_with_state(settings, adjust, |state, _| state).await
}

/// The API whose state `adjust_state` finishes (given the test's pool), e.g. with billing.
pub async fn spawn_app_with_state(
    settings: ControlSettings,
    adjust: impl FnOnce(Control) -> Control,
    adjust_state: impl FnOnce(ControlState, &PgPool) -> ControlState,
) -> TestApp {
    let database = TestDatabase::create().await;
    let pool = PgPoolOptions::new()
        .max_connections(5)
        .connect_with(database.options.clone())
        .await
        .expect("connects to the test database");
    control::MIGRATOR.run(&pool).await.expect("migrations run");
    let secrets = SecretsKey::from_base64(&SecretsKey::generate_base64()).unwrap();
    let mailer = MemoryMailer::new();
    let control = Control::new(pool.clone(), secrets.clone()).with_mailer(
        std::sync::Arc::new(mailer.clone()),
        MailLinks::new("http://dashboard.test"),
    );
    let control = adjust(control);
    let state = web::Data::new(adjust_state(
        ControlState::with_settings(control.clone(), settings),
        &pool,
    ));
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds port 0");
    let port = listener.local_addr().unwrap().port();
    let server =
        HttpServer::new(move || App::new().configure(control::routes::configure(state.clone())))
            .workers(1)
            .disable_signals()
            .listen(listener)
            .expect("listens")
            .run();
    let handle = server.handle();
    tokio::spawn(server);
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        pool,
        secrets,
        control,
        mailer,
        server: handle,
        _database: database,
    }
}

/// Who a request speaks for.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    /// A browser: the session cookie, and the CSRF header when `csrf` is set.
    Session {
        cookie: String,
        csrf: Option<String>,
    },
    Bearer(String),
}

impl Caller {
    /// The same session without its CSRF header.
    pub fn without_csrf(&self) -> Self {
        self.with_csrf(None)
    }

    pub fn with_csrf(&self, csrf: Option<&str>) -> Self {
        match self {
            Self::Session { cookie, .. } => Self::Session {
                cookie: cookie.clone(),
                csrf: csrf.map(str::to_owned),
            },
            other => other.clone(),
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Response {
    /// The `Set-Cookie` header for `name`, whole (value and attributes).
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|value| value.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    pub fn cookie_value(&self, name: &str) -> Option<String> {
        let header = self.set_cookie(name)?;
        let pair = header.split(';').next()?;
        Some(pair[name.len() + 1..].to_owned())
    }

    /// Asserts the status and that the body is a JSON error; returns its message.
    #[track_caller]
    pub fn error(&self, status: StatusCode) -> &str {
        assert_eq!(self.status, status, "body: {}", self.body);
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("a JSON error body, got {}", self.body))
    }

    #[track_caller]
    pub fn ok(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        &self.body
    }
}

impl TestApp {
    pub async fn request(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.http.request(method, format!("{}{path}", self.address));
        match caller {
            Caller::Anonymous => {}
            Caller::Session { cookie, csrf } => {
                request = request.header(COOKIE, format!("sb_session={cookie}"));
                if let Some(csrf) = csrf {
                    request = request.header("X-CSRF-Token", csrf);
                }
            }
            Caller::Bearer(token) => {
                request = request.header(AUTHORIZATION, format!("Bearer {token}"));
            }
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::read(request).await
    }

    /// A request with a body sent as is, for malformed input.
    pub async fn raw(&self, path: &str, content_type: &str, body: &'static str) -> Response {
        let request = self
            .http
            .post(format!("{}{path}", self.address))
            .header("Content-Type", content_type)
            .body(body);
        Self::read(request).await
    }

    async fn read(request: reqwest::RequestBuilder) -> Response {
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON body, got {text:?}"))
        };
        Response {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, caller: &Caller, path: &str) -> Response {
        self.request(caller, Method::GET, path, None).await
    }

    pub async fn post(&self, caller: &Caller, path: &str, body: Value) -> Response {
        self.request(caller, Method::POST, path, Some(body)).await
    }

    pub async fn sign_up(&self, email: &str, password: &str) -> Response {
        let body = json!({ "email": email, "password": password });
        self.post(&Caller::Anonymous, "/v1/signup", body).await
    }

    pub async fn log_in(&self, email: &str, password: &str) -> Response {
        let body = json!({ "email": email, "password": password });
        self.post(&Caller::Anonymous, "/v1/login", body).await
    }

    /// A new account's browser session.
    pub async fn signed_up(&self, email: &str) -> Caller {
        let response = self.sign_up(email, PASSWORD).await;
        response.ok(StatusCode::CREATED);
        session_of(&response)
    }

    /// A new account's browser session, its email verified through the mailed link.
    pub async fn signed_up_verified(&self, email: &str) -> Caller {
        let session = self.signed_up(email).await;
        let token = token_in(&self.mails_to(email, 1).await[0]);
        let verified = self
            .post(
                &Caller::Anonymous,
                "/v1/account/verify",
                json!({ "token": token }),
            )
            .await;
        assert_eq!(verified.status, StatusCode::NO_CONTENT, "{}", verified.body);
        session
    }

    /// A new API token of the caller's account.
    pub async fn api_token(&self, caller: &Caller) -> Caller {
        let response = self
            .post(caller, "/v1/tokens", json!({ "name": "test" }))
            .await;
        Caller::Bearer(
            response.ok(StatusCode::CREATED)["token"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    }

    /// A new app of the caller's account: (app id, key, secret).
    pub async fn app(&self, caller: &Caller, name: &str) -> (String, String, String) {
        let response = self.post(caller, "/v1/apps", json!({ "name": name })).await;
        let body = response.ok(StatusCode::CREATED);
        let field = |name: &str| body[name].as_str().unwrap().to_owned();
        (field("app_id"), field("key"), field("secret"))
    }

    /// A new account's browser session and a new app of it: (session, app id).
    pub async fn signed_up_with_app(&self, email: &str, app_name: &str) -> (Caller, String) {
        let session = self.signed_up(email).await;
        let (app_id, _, _) = self.app(&session, app_name).await;
        (session, app_id)
    }

    /// Adds a second free plan (price 0), `hobby`, so moves between free plans can be tried.
    pub async fn add_free_plan(&self) {
        sqlx::query(
            "INSERT INTO plans VALUES ('hobby', 'Hobby', 0, 200, 400000, 10240, 10, 20, 100, 100, 100, 120, 1, TRUE, 0, 0, 5)",
        )
        .execute(&self.pool)
        .await
        .expect("adds the hobby plan");
    }

    /// The first `count` mails sent to `to`, once that many have been sent (mails go out in
    /// the background); panics after 10 s.
    pub async fn mails_to(&self, to: &str, count: usize) -> Vec<Mail> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let sent: Vec<Mail> = self
                .mailer
                .sent()
                .into_iter()
                .filter(|mail| mail.to == to)
                .collect();
            if sent.len() >= count {
                return sent;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{count} mails to {to} expected, {} sent",
                sent.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn count(&self, table: &'static str) -> i64 {
        // Table names come from the tests themselves, never from input.
        let sql = format!("SELECT count(*) FROM {table}");
        sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .expect("counts rows")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stops accepting; the database is dropped right after, closing what is left.
        drop(self.server.stop(false));
    }
}

/// The one-time token of a mailed link (its `token` query parameter).
pub fn token_in(mail: &Mail) -> String {
    let (_, token) = mail.link.split_once("token=").expect("a link with a token");
    assert!(mail.text.contains(&mail.link), "the text carries the link");
    token.to_owned()
}

/// The session a signup or login response started.
pub fn session_of(response: &Response) -> Caller {
    Caller::Session {
        cookie: response
            .cookie_value("sb_session")
            .expect("an sb_session cookie"),
        csrf: Some(response.body["csrf_token"].as_str().unwrap().to_owned()),
    }
}

/// A database of its own for one test, dropped when the test ends (even when it fails).
struct TestDatabase {
    name: String,
    options: PgConnectOptions,
    server_options: PgConnectOptions,
}

impl TestDatabase {
    async fn create() -> Self {
        let url = std::env::var("SWITCHBOARD_TEST_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        let server_options = PgConnectOptions::from_str(&url).expect("a Postgres URL");
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut connection = PgConnection::connect_with(&server_options)
            .await
            .expect("connects to Postgres at SWITCHBOARD_TEST_DATABASE_URL");
        // The name is a UUID made here, so it is safe to splice in.
        sqlx::raw_sql(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .execute(&mut connection)
            .await
            .expect("creates the test database");
        let options = server_options.clone().database(&name);
        Self {
            name,
            options,
            server_options,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (name, server_options) = (self.name.clone(), self.server_options.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its
        // own small runtime can.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut connection = PgConnection::connect_with(&server_options).await?;
                let sql = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut connection)
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
