//! One connection's pgwire handlers: SCRAM login against the configured users, then every
//! statement checked by [`super::guard`], run by datafusion-postgres on the connection's own
//! session, and held to the time limit while its rows stream.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::ScramAuth;
use datafusion_postgres::pgwire::api::auth::{AuthSource, DefaultServerParameterProvider};
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, QueryResponse, Response};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, METADATA_USER, PgWireServerHandlers, Type,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use futures::{Sink, StreamExt};
use tokio::sync::OnceCell;

use super::gate::{Activity, GatedStartup};
use super::memory::{self, ConnectionPool};
use super::{Shared, guard};

type Statement = (String, Option<(sqlparser::ast::Statement, LogicalPlan)>);

fn user_error(sqlstate: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        sqlstate.to_owned(),
        message,
    )))
}

/// The connection's DataFusion session, built for its user on the first statement.
struct Session {
    shared: Arc<Shared>,
    service: OnceCell<Arc<DfSessionService>>,
    activity: Arc<Activity>,
}

impl Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("started", &self.service.initialized())
            .finish_non_exhaustive()
    }
}

impl Session {
    async fn service<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
    ) -> PgWireResult<&Arc<DfSessionService>> {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        self.service
            .get_or_try_init(|| build_service(Arc::clone(&self.shared), user))
            .await
    }

    fn scoped<C: ClientInfo + ?Sized>(&self, client: &C) -> bool {
        client
            .metadata()
            .get(METADATA_USER)
            .and_then(|user| self.shared.logins.get(user))
            .is_none_or(|login| login.scope != crate::query::Scope::All)
    }

    /// The statement checks for this connection's user: everyone's, and the merchant-scoped
    /// users' own. A statement starts: the connection is not idle.
    fn check<C: ClientInfo + ?Sized>(&self, client: &C, sql: &str) -> PgWireResult<()> {
        self.activity.touch();
        let metrics = &self.shared.gate.metrics;
        metrics.statements.inc();
        let refuse = |refusal: guard::Refusal| {
            metrics.statements_refused.inc();
            user_error(refusal.sqlstate, refusal.message)
        };
        guard::check_sql(sql).map_err(refuse)?;
        if self.scoped(client) {
            guard::check_scoped(sql).map_err(refuse)?;
        }
        Ok(())
    }

    fn wording<C: ClientInfo + ?Sized>(&self, client: &C) -> Wording {
        Wording {
            memory_limit_mb: self.shared.config.memory_limit_mb,
            total_memory_mb: self.shared.config.total_memory_mb,
            scoped: self.scoped(client),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.shared.config.query_timeout_ms)
    }
}

async fn build_service(shared: Arc<Shared>, user: String) -> PgWireResult<Arc<DfSessionService>> {
    let Some(login) = shared.logins.get(&user) else {
        return Err(user_error("28000", format!("no such user \"{user}\"")));
    };
    let internal = |e: String| user_error("XX000", e);
    let limit = shared.config.memory_limit_mb * 1024 * 1024;
    // No spilling: a statement past its memory stops with a message naming the limit rather
    // than filling the disk.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(ConnectionPool::new(
            Arc::clone(&shared.memory),
            limit,
        )))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
        .map_err(|e| internal(e.to_string()))?;
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(shared.config.target_partitions)
        .with_default_catalog_and_schema("datafusion", "public");
    let context = SessionContext::new_with_config_rt(config, runtime);
    crate::query::install(&context, &shared.storage, &login.scope)
        .await
        .map_err(|e| internal(e.to_string()))?;
    setup_pg_catalog(&context, "datafusion", EmptyContextProvider)
        .map_err(|e| internal(e.to_string()))?;
    let hooks: Vec<Arc<dyn QueryHook>> = vec![
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ];
    Ok(Arc::new(DfSessionService::new_with_hooks(
        Arc::new(context),
        hooks,
    )))
}

/// How errors are worded for one connection's user.
#[derive(Debug, Clone, Copy)]
struct Wording {
    memory_limit_mb: usize,
    total_memory_mb: usize,
    scoped: bool,
}

/// SQLSTATEs of the endpoint's own messages, which quote no row.
const OWN_SQLSTATES: &[&str] = &[
    "25006", "42501", "0A000", "57014", "53200", "53300", "28000", "28P01",
];

/// What a merchant-scoped user is told of an error raised while rows were read: its kind
/// only, since its text can quote a row's value. Planning errors quote only the user's SQL.
fn withheld(message: &str) -> Option<String> {
    const PLANNING: &[&str] = &[
        "Error during planning",
        "Schema error",
        "SQL error",
        "sql parser error",
        "This feature is not implemented",
    ];
    if PLANNING.iter().any(|marker| message.contains(marker)) {
        return None;
    }
    let lower = message.to_ascii_lowercase();
    let kind = if lower.contains("divide by zero") || lower.contains("division by zero") {
        "division by zero"
    } else if lower.contains("cast") || lower.contains("pars") {
        "a value could not be converted to the requested type"
    } else if lower.contains("overflow") {
        "arithmetic overflow"
    } else {
        "an expression failed on a row"
    };
    Some(format!(
        "{kind} (details are withheld from merchant-scoped users, since they can quote row values)"
    ))
}

/// Errors as a client should read them: a memory refusal names the limit it hit, and a
/// merchant-scoped user's errors carry no row values.
fn explain(error: PgWireError, wording: Wording) -> PgWireError {
    let text = error.to_string();
    if text.contains("Resources exhausted") {
        let message = if text.contains(memory::TOTAL_LIMIT) {
            format!(
                "the SQL endpoint's memory (sql.total_memory_mb = {}) is taken by other queries; try again shortly",
                wording.total_memory_mb
            )
        } else {
            format!(
                "the query needs more memory than one statement may use (sql.memory_limit_mb = {})",
                wording.memory_limit_mb
            )
        };
        return user_error("53200", message);
    }
    if !wording.scoped {
        return error;
    }
    let mut info = ErrorInfo::from(error);
    if OWN_SQLSTATES.contains(&info.code.as_str()) {
        return PgWireError::UserError(Box::new(info));
    }
    if let Some(message) = withheld(&info.message) {
        info.message = message;
        info.detail = None;
        info.hint = None;
    }
    PgWireError::UserError(Box::new(info))
}

fn timed_out(limit: Duration) -> PgWireError {
    user_error(
        "57014",
        format!(
            "canceling statement: it ran longer than the server's limit of {} ms (sql.query_timeout_ms)",
            limit.as_millis()
        ),
    )
}

/// The response with its rows held to `deadline`: rows still coming then end with a 57014.
fn limited(
    response: Response,
    deadline: tokio::time::Instant,
    limit: Duration,
    wording: Wording,
) -> Response {
    let Response::Query(query) = response else {
        return response;
    };
    let command_tag = query.command_tag().to_owned();
    let row_schema = query.row_schema();
    let data_rows = query.data_rows;
    let rows = futures::stream::unfold((data_rows, false), move |(mut rows, done)| async move {
        if done {
            return None;
        }
        match tokio::time::timeout_at(deadline, rows.next()).await {
            Ok(Some(Ok(row))) => Some((Ok(row), (rows, false))),
            Ok(Some(Err(error))) => Some((Err(explain(error, wording)), (rows, true))),
            Ok(None) => None,
            Err(_) => Some((Err(timed_out(limit)), (rows, true))),
        }
    });
    let mut response = QueryResponse::new(row_schema, rows);
    response.command_tag = command_tag;
    Response::Query(response)
}

/// Checks each statement before the session plans it.
#[derive(Debug)]
pub(crate) struct GuardedParser {
    session: Arc<Session>,
}

#[async_trait]
impl QueryParser for GuardedParser {
    type Statement = Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        self.session.check(client, sql)?;
        let wording = self.session.wording(client);
        let service = self.session.service(client).await?;
        service
            .query_parser()
            .parse_sql(client, sql, types)
            .await
            .map_err(|error| explain(error, wording))
    }

    fn get_parameter_types(&self, statement: &Statement) -> PgWireResult<Vec<Type>> {
        match self.session.service.get() {
            Some(service) => service.query_parser().get_parameter_types(statement),
            None => Ok(Vec::new()),
        }
    }

    fn get_result_schema(
        &self,
        statement: &Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match self.session.service.get() {
            Some(service) => service
                .query_parser()
                .get_result_schema(statement, column_format),
            None => Ok(Vec::new()),
        }
    }
}

/// Simple and extended queries of one connection.
#[derive(Debug)]
pub(crate) struct Queries {
    session: Arc<Session>,
    parser: Arc<GuardedParser>,
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.check(client, query)?;
        let service = Arc::clone(self.session.service(client).await?);
        let limit = self.session.timeout();
        let wording = self.session.wording(client);
        let deadline = tokio::time::Instant::now() + limit;
        let responses = tokio::time::timeout_at(
            deadline,
            SimpleQueryHandler::do_query(service.as_ref(), client, query),
        )
        .await
        .map_err(|_| timed_out(limit))?
        .map_err(|error| explain(error, wording))?;
        Ok(responses
            .into_iter()
            .map(|response| limited(response, deadline, limit, wording))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = Statement;
    type QueryParser = GuardedParser;

    fn query_parser(&self) -> Arc<GuardedParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.activity.touch();
        let service = Arc::clone(self.session.service(client).await?);
        let limit = self.session.timeout();
        let wording = self.session.wording(client);
        let deadline = tokio::time::Instant::now() + limit;
        let response = tokio::time::timeout_at(
            deadline,
            ExtendedQueryHandler::do_query(service.as_ref(), client, portal, max_rows),
        )
        .await
        .map_err(|_| timed_out(limit))?
        .map_err(|error| explain(error, wording))?;
        Ok(limited(response, deadline, limit, wording))
    }
}

/// The handlers of one connection. The SCRAM exchange keeps state, so each connection has its
/// own.
pub(crate) struct Connection {
    startup: Arc<GatedStartup<SASLAuthStartupHandler<DefaultServerParameterProvider>>>,
    queries: Arc<Queries>,
}

impl Connection {
    pub(crate) fn new(shared: Arc<Shared>, activity: Arc<Activity>) -> Connection {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.is_superuser = false;
        parameters.default_transaction_read_only = true;
        let logins: Arc<dyn AuthSource> = Arc::clone(&shared.logins) as Arc<dyn AuthSource>;
        let mut scram = ScramAuth::new(logins);
        scram.set_iterations(shared.config.scram_iterations);
        let startup = GatedStartup {
            inner: SASLAuthStartupHandler::new(Arc::new(parameters)).with_scram(scram),
            gate: Arc::clone(&shared.gate),
            activity: Arc::clone(&activity),
        };
        let session = Arc::new(Session {
            shared,
            service: OnceCell::new(),
            activity,
        });
        let parser = Arc::new(GuardedParser {
            session: Arc::clone(&session),
        });
        Connection {
            startup: Arc::new(startup),
            queries: Arc::new(Queries { session, parser }),
        }
    }
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn startup_handler(&self) -> Arc<impl datafusion_postgres::pgwire::api::auth::StartupHandler> {
        Arc::clone(&self.startup)
    }
}
