//! Wiring: builds the store, the gateway and the services from the settings, binds the
//! listener and runs the server. The binary and the tests share this one entry point:
//! `Application::build(settings)` (or `build_with` to bring your own adapters), then
//! `port()` and `run_until_stopped()`.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{
    dev::Server,
    http::header,
    middleware::{from_fn, Condition},
    web, App, HttpServer,
};
use anyhow::Context;
use rand::RngCore;
use seatkeeper_domain::{
    error_chain,
    ports::{Clock, IntentGateway, PaymentGateway, Store, SystemClock},
    service::{
        CheckoutService, HealthService, KeyService, PlanService, PurchaseService, Reconciler,
        SubscriptionService,
    },
    AuditContext, Capacity, Currency, Interval, NewPlan, PlanName, UnitAmount,
};
use seatkeeper_payments::{SimulatedGateway, StripeGateway};
use seatkeeper_store_memory::MemoryStore;
use seatkeeper_store_mongo::{MongoSettings, MongoStore};
use seatkeeper_store_postgres::{PostgresSettings, PostgresStore};
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

use crate::{
    auth::{sessions::Sessions, Authenticator},
    configuration::{redact, ExposeSecret, PaymentProvider, Secret, Settings, StoreKind},
    metrics::{MeteredGateway, MeteredIntents},
    rate_limit::RateLimits,
    recovery::RecoveryLog,
    request_id,
    routes::{self, AppState},
};

/// The adapters the server runs on.
pub struct Wiring {
    pub store: Arc<dyn Store>,
    /// Charges of the one-call purchase, refunds, look-ups.
    pub gateway: Arc<dyn PaymentGateway>,
    /// The PaymentIntents of checkout sessions (the same provider as `gateway`).
    pub intents: Arc<dyn IntentGateway>,
    /// The in-process simulator, when it is the provider (its 3-D Secure page is served).
    pub simulated: Option<Arc<SimulatedGateway>>,
    pub clock: Arc<dyn Clock>,
}

impl Wiring {
    /// The adapters the settings name.
    pub async fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let store = Self::store_from_settings(settings).await?;
        let mut wiring = Self::simulated(
            store,
            // Cancelled intents go when their sessions do (`checkout.retention_secs`).
            Arc::new(
                SimulatedGateway::with_latency(Duration::from_millis(settings.payments.latency_ms))
                    .forgetting_canceled_intents_after(Duration::from_secs(
                        settings.checkout.retention_secs,
                    )),
            ),
        );
        if settings.payments.provider == PaymentProvider::Stripe {
            let secret_key = settings
                .payments
                .secret_key
                .as_ref()
                .map(|k| k.expose_secret().to_owned())
                .unwrap_or_default();
            let stripe = Arc::new(
                StripeGateway::new(settings.stripe_settings(secret_key))
                    .map_err(|e| anyhow::anyhow!(e))?,
            );
            wiring.gateway = stripe.clone();
            wiring.intents = stripe;
            wiring.simulated = None;
        }
        Ok(wiring)
    }

    /// `store` with the in-process payment simulator `gateway` and the system clock.
    pub fn simulated(store: Arc<dyn Store>, gateway: Arc<SimulatedGateway>) -> Self {
        Self {
            store,
            gateway: gateway.clone(),
            intents: gateway.clone(),
            simulated: Some(gateway),
            clock: Arc::new(SystemClock),
        }
    }

    /// The store the settings name, connected (and migrated, for PostgreSQL).
    pub async fn store_from_settings(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
        let store: Arc<dyn Store> = match settings.store_kind()? {
            StoreKind::Memory => Arc::new(MemoryStore::new()),
            StoreKind::Postgres => {
                let pg = PostgresSettings {
                    url: settings.store.url.clone(),
                    max_connections: settings.store.pool_size,
                    acquire_timeout: Duration::from_millis(settings.store.acquire_timeout_ms),
                };
                let store = PostgresStore::connect(&pg).await.map_err(|e| {
                    anyhow::anyhow!(
                        "could not open the PostgreSQL store at {}: {}",
                        redact(&pg.url),
                        error_chain(&e)
                    )
                })?;
                Arc::new(store)
            }
            StoreKind::Mongo => {
                // Refuses a standalone server (transactions need a replica set) and gives
                // up on an unreachable one after the server-selection timeout.
                let mut mongo = MongoSettings::new(settings.store.url.clone());
                mongo.max_pool_size = settings.store.pool_size;
                mongo.server_selection_timeout =
                    Duration::from_millis(settings.store.acquire_timeout_ms);
                let store = MongoStore::connect(&mongo).await.map_err(|e| {
                    anyhow::anyhow!(
                        "could not open the MongoDB store at {}: {}",
                        redact(&mongo.url),
                        error_chain(&e)
                    )
                })?;
                Arc::new(store)
            }
        };
        Ok(store)
    }
}

/// A bound, ready-to-run server.
pub struct Application {
    port: u16,
    server: Server,
    /// The internal `/metrics` server and its port, when `http.metrics_addr` is set.
    metrics: Option<(u16, Server)>,
    admin_token: Secret,
    token_generated: bool,
    /// The key sweep, the metrics upkeep and the reconciler.
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Builds the server the settings describe.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let wiring = Wiring::from_settings(&settings).await?;
        Self::build_with(settings, wiring).await
    }

    /// Builds the server on the given adapters.
    pub async fn build_with(settings: Settings, wiring: Wiring) -> anyhow::Result<Self> {
        let addr = settings.http.addr;
        let listener =
            TcpListener::bind(addr).with_context(|| format!("could not listen on {addr}"))?;
        let port = listener.local_addr()?.port();

        let (admin_token, token_generated) = match &settings.auth.admin_token {
            Some(token) => (token.clone(), false),
            None => {
                let mut bytes = [0u8; 24];
                rand::thread_rng().fill_bytes(&mut bytes);
                (Secret::from(hex::encode(bytes)), true)
            }
        };

        // The recorder first, so that nothing this app records is lost.
        crate::metrics::handle();
        let Wiring {
            store,
            gateway,
            intents,
            simulated,
            clock,
        } = wiring;
        let gateway: Arc<dyn PaymentGateway> = Arc::new(MeteredGateway(gateway));
        let intents: Arc<dyn IntentGateway> = Arc::new(MeteredIntents(intents));
        let checkouts = CheckoutService::new(
            store.clone(),
            intents,
            gateway.clone(),
            clock.clone(),
            settings.checkout.domain(),
        );
        let reconciler = Reconciler::new(
            store.clone(),
            gateway.clone(),
            clock.clone(),
            settings.recovery(),
        );
        let live = crate::live::Hub::new(
            store.clone(),
            settings.live.backlog,
            Duration::from_millis(settings.live.coalesce_ms),
        );
        let state = web::Data::new(AppState {
            plans: PlanService::new(store.clone(), clock.clone()),
            subscriptions: SubscriptionService::new(store.clone(), clock.clone()),
            purchases: PurchaseService::new(
                store.clone(),
                gateway,
                clock.clone(),
                settings.idempotency(),
            ),
            health: HealthService::new(store.clone()),
            recovery: RecoveryLog::new(reconciler.clone()),
            keys: KeyService::new(store.clone(), clock.clone()),
            checkouts: checkouts.clone(),
            checkout_bounds: (
                settings.checkout.min_expires_in_secs,
                settings.checkout.max_expires_in_secs,
            ),
            webhooks: routes::webhooks::WebhookConfig {
                secrets: settings
                    .payments
                    .webhook_secrets
                    .iter()
                    .map(|s| s.expose_secret().to_owned())
                    .collect(),
                tolerance_secs: i64::try_from(settings.payments.webhook_tolerance_secs)
                    .unwrap_or(i64::MAX),
            },
            simulated,
            live: live.clone(),
            demo_sign_in: settings.demo_sign_in(),
        });
        let session_secret = match &settings.auth.session_secret {
            Some(secret) => secret.expose_secret().as_bytes().to_vec(),
            None => {
                tracing::warn!(
                    "auth.session_secret is not set: customer sessions are signed with a key made for this run, so they end when it stops and no other instance accepts them; set it (the same on every instance) to run more than one"
                );
                let mut bytes = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                bytes
            }
        };
        let authenticator = web::Data::new(Authenticator::new(
            admin_token.expose_secret(),
            state.keys.clone(),
            Sessions::new(
                &session_secret,
                Duration::from_secs(settings.auth.session_ttl_secs),
            ),
            clock.clone(),
        ));
        if settings.seed_demo() {
            seed_demo_plans(&state.plans, store.as_ref())
                .await
                .context("could not seed the demo plans")?;
        }

        let stream_timing = web::Data::new(routes::live::StreamTiming {
            heartbeat: Duration::from_secs(settings.live.heartbeat_secs),
            retry: Duration::from_millis(settings.live.retry_ms),
        });
        let recovery = state.recovery.clone();
        let limits = settings.rate_limit.enabled.then(|| {
            Arc::new(RateLimits::new(
                &settings.rate_limit,
                settings.http.trusted_proxies.clone(),
            ))
        });
        let limits_data = limits.clone().map(web::Data::from);
        let cors_origins = settings.http.cors_allowed_origins.clone();
        let body_limit = settings.http.body_limit_bytes;
        let bench_echo = crate::bench::EchoRoute::of(&settings.bench);
        let doc = crate::openapi::document();
        let pages = web::Data::new(crate::pages::PageConfig {
            demo_sign_in: settings.demo_sign_in(),
            provider: match settings.payments.provider {
                PaymentProvider::Simulated => "simulated",
                PaymentProvider::Stripe => "stripe",
            },
            publishable_key: settings.payments.publishable_key.clone(),
        });
        let metrics_state = state.clone();
        let mut server = HttpServer::new(move || {
            let mut app = App::new();
            if let Some(limits) = &limits_data {
                app = app.app_data(limits.clone());
            }
            app.wrap(Condition::new(
                limits_data.is_some(),
                from_fn(crate::rate_limit::middleware),
            ))
            .wrap_fn(crate::metrics::middleware)
            .wrap(Condition::new(
                !cors_origins.is_empty(),
                cors(&cors_origins),
            ))
            .wrap_fn(request_id::respond)
            // Outermost: the request's span covers the other middleware too.
            .wrap(TracingLogger::<request_id::RequestSpan>::new())
            .app_data(state.clone())
            .app_data(stream_timing.clone())
            .app_data(authenticator.clone())
            .app_data(web::PayloadConfig::new(body_limit))
            // The echo (when on) is matched first, as the purchase is among the API's
            // routes: the two are compared, so neither pays for the other's table.
            .configure(|cfg| crate::bench::configure(cfg, bench_echo))
            .configure(|cfg| routes::register(cfg, &doc))
            .app_data(pages.clone())
            .configure(crate::pages::configure)
            .default_service(web::to(routes::not_found))
        })
        .listen(listener)?;
        if settings.http.workers > 0 {
            server = server.workers(settings.http.workers);
        }
        let server = server.disable_signals().run();
        let metrics = match settings.http.metrics_addr {
            Some(addr) => Some(metrics_server(addr, metrics_state)?),
            None => None,
        };

        let mut background = vec![
            tokio::spawn(sweep_expired_keys(
                store,
                clock,
                Duration::from_secs(settings.idempotency.sweep_interval_secs),
            )),
            tokio::spawn(crate::metrics::upkeep(Duration::from_secs(5))),
        ];
        if let Some(limits) = limits {
            background.push(tokio::spawn(crate::rate_limit::upkeep(
                limits,
                Duration::from_secs(60),
            )));
        }
        background.push(tokio::spawn(live.run()));
        background.push(tokio::spawn(purge_checkouts(
            checkouts.clone(),
            Duration::from_secs(settings.idempotency.sweep_interval_secs),
        )));
        if settings.checkout.worker_enabled {
            background.push(tokio::spawn(crate::checkout_worker::run(
                checkouts,
                Duration::from_millis(settings.checkout.worker_interval_ms),
            )));
        }
        if settings.recovery.enabled {
            background.push(tokio::spawn(reconcile_periodically(
                recovery,
                Duration::from_millis(settings.recovery.interval_ms),
            )));
        }

        Ok(Self {
            port,
            server,
            metrics,
            admin_token,
            token_generated,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the internal `/metrics` address, when one is configured.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(port, _)| *port)
    }

    pub fn admin_token(&self) -> &str {
        self.admin_token.expose_secret()
    }

    /// Whether the admin token was generated for this run (and must be shown once).
    pub fn token_generated(&self) -> bool {
        self.token_generated
    }

    /// Serves until stopped: SIGINT or SIGTERM stop it gracefully (in-flight requests
    /// finish, for up to 30 s).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let signals = tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down gracefully");
            handle.stop(true).await;
        });
        let metrics = self.metrics.map(|(_, server)| {
            let handle = server.handle();
            (tokio::spawn(server), handle)
        });
        let result = self.server.await;
        signals.abort();
        if let Some((task, handle)) = metrics {
            handle.stop(true).await;
            let _ = task.await;
        }
        for task in &self.background {
            task.abort();
        }
        result
    }
}

/// The internal server of `GET /metrics`, without a credential: one worker, bound now.
fn metrics_server(
    addr: std::net::SocketAddr,
    state: web::Data<AppState>,
) -> anyhow::Result<(u16, Server)> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("could not listen on {addr} (http.metrics_addr)"))?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        App::new()
            .wrap_fn(request_id::respond)
            .app_data(state.clone())
            .route("/metrics", web::get().to(routes::admin::render_metrics))
            .default_service(web::to(routes::not_found))
    })
    .workers(1)
    .listen(listener)?
    .disable_signals()
    .run();
    tracing::info!(
        port,
        "metrics served without a credential on the internal address"
    );
    Ok((port, server))
}

/// CORS for browser pages served from `origins`: the API's methods, the headers a client
/// sends, and the headers it may read.
fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::LOCATION,
            header::RETRY_AFTER,
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("idempotent-replayed"),
            header::HeaderName::from_static("ratelimit"),
            header::HeaderName::from_static("ratelimit-policy"),
        ])
        .max_age(600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the reconciler every `every`, and at once again while a run finished something. A
/// run that left everything it found in doubt (the gateway cannot answer) waits for the
/// next interval: asking again at once would be a busy loop against a provider that is down.
async fn reconcile_periodically(log: RecoveryLog, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        while let Some(report) = log.run().await {
            if report.found == 0 || report.in_doubt == report.found {
                break;
            }
        }
    }
}

/// Deletes expired idempotency keys every `every`, keeping their storage bounded.
async fn sweep_expired_keys(store: Arc<dyn Store>, clock: Arc<dyn Clock>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match store.purge_expired_keys(clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired idempotency keys deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete expired idempotency keys"),
        }
    }
}

/// Deletes ended checkout sessions and old webhook event ids every `every`.
async fn purge_checkouts(checkouts: CheckoutService, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match checkouts.purge().await {
            Ok(p) if p.sessions + p.events == 0 => {}
            Ok(p) => tracing::info!(
                sessions = p.sessions,
                events = p.events,
                "ended checkout sessions and old webhook events deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "could not purge checkout sessions"),
        }
    }
}

/// Creates a few demo plans when the store has none.
async fn seed_demo_plans(plans: &PlanService, store: &dyn Store) -> anyhow::Result<()> {
    if !store.list_plans(None, 1).await?.is_empty() {
        return Ok(());
    }
    let ctx = AuditContext {
        actor: "seed".into(),
        trace_id: "demo-seed".into(),
    };
    for (name, capacity, amount, interval) in [
        ("Starter", 10, 900, Interval::Month),
        ("Team", 50, 4900, Interval::Month),
        ("Enterprise", 5, 99_900, Interval::Year),
    ] {
        let new = NewPlan {
            name: PlanName::parse(name)?,
            capacity: Capacity::new(capacity)?,
            unit_amount: UnitAmount::new(amount)?,
            currency: Currency::parse("usd")?,
            interval,
        };
        plans.create(new, &ctx).await?;
    }
    tracing::info!("seeded 3 demo plans (Starter, Team, Enterprise)");
    Ok(())
}
