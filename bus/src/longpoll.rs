//! The embedded broker's front: Fetch requests wait for records, as on a real Kafka broker.
//!
//! noida's engine answers a Fetch at once, records or not, ignoring the request's
//! `max_wait_ms`. librdkafka then fetches again at once, so every idle consumer spun a broker
//! thread of its own and one of the engine's: the idle demo burnt both cores of the machine
//! (about 20 CPU-seconds per 10 s; BENCHMARKS.md), and every latency measured on it was
//! measured against that load.
//!
//! So clients connect here. Each connection is served in request order, as Kafka does:
//! a Fetch is decoded and answered from the engine's public `handle_fetch`, and when it
//! finds no records it waits, up to the request's `max_wait_ms`, for any other request to
//! have gone through (a produce, a transaction's end), then looks again. Every other request
//! is passed unchanged to noida's own connection handler on an internal loopback listener,
//! one backend connection per client connection, so whatever state noida keeps per connection
//! stays per connection.

use std::io::{BufReader, BufWriter};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use noida::kafka::codec::{read_frame, write_frame};
use noida::kafka::engine::Engine;

/// Counts the requests that may have changed what a Fetch sees; waiting fetches sleep on it.
#[derive(Default)]
struct Changes {
    count: Mutex<u64>,
    changed: Condvar,
}

impl Changes {
    fn current(&self) -> u64 {
        *self.count.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.changed.notify_all();
    }

    /// Returns when the count has moved past `seen` or `deadline` has come.
    fn wait_past(&self, seen: u64, deadline: Instant) {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *count == seen {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            count = self
                .changed
                .wait_timeout(count, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Serves `public` (what clients are told to connect to) in front of noida's handler, which
/// listens on an internal loopback port.
pub(crate) fn serve(public: TcpListener, engine: Engine) -> std::io::Result<()> {
    let internal = TcpListener::bind("127.0.0.1:0")?;
    let backend = internal.local_addr()?;
    let noida_engine = engine.clone();
    std::thread::Builder::new()
        .name("broker-engine".into())
        .spawn(move || {
            for stream in internal.incoming().flatten() {
                let engine = noida_engine.clone();
                std::thread::spawn(move || {
                    noida::kafka::connection::handle_connection(stream, engine);
                });
            }
        })?;
    let changes = Arc::new(Changes::default());
    std::thread::Builder::new()
        .name("broker-accept".into())
        .spawn(move || {
            for client in public.incoming().flatten() {
                let (engine, changes) = (engine.clone(), Arc::clone(&changes));
                std::thread::spawn(move || {
                    if let Err(error) = connection(&client, &engine, &changes, backend) {
                        tracing::debug!(%error, "embedded broker connection ended");
                    }
                });
            }
        })?;
    Ok(())
}

struct Backend {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
}

impl Backend {
    fn connect(addr: SocketAddr) -> std::io::Result<Backend> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Backend {
            reader: BufReader::new(stream.try_clone()?),
            writer: BufWriter::new(stream),
        })
    }

    fn exchange(&mut self, frame: &[u8]) -> std::io::Result<Option<BytesMut>> {
        write_frame(&mut self.writer, frame)?;
        read_frame(&mut self.reader)
    }
}

fn connection(
    client: &TcpStream,
    engine: &Engine,
    changes: &Changes,
    backend_addr: SocketAddr,
) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut reader = BufReader::new(client);
    let mut writer = BufWriter::new(client);
    let mut backend: Option<Backend> = None;
    while let Some(frame) = read_frame(&mut reader)? {
        if let Some(answer) = fetch(&frame, engine, changes) {
            write_frame(&mut writer, &answer)?;
            continue;
        }
        let backend = match &mut backend {
            Some(backend) => backend,
            None => backend.insert(Backend::connect(backend_addr)?),
        };
        // noida closes the connection on a request it cannot read; so does this one.
        let Some(answer) = backend.exchange(&frame)? else {
            return Ok(());
        };
        changes.bump();
        write_frame(&mut writer, &answer)?;
    }
    Ok(())
}

/// The answer to `frame` when it is a Fetch this front can read; `None` passes it to noida.
fn fetch(frame: &[u8], engine: &Engine, changes: &Changes) -> Option<Vec<u8>> {
    let api_key = i16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
    if api_key != ApiKey::Fetch as i16 {
        return None;
    }
    let version = i16::from_be_bytes([*frame.get(2)?, *frame.get(3)?]);
    let mut buf = BytesMut::from(frame);
    let header =
        RequestHeader::decode(&mut buf, ApiKey::Fetch.request_header_version(version)).ok()?;
    let request = FetchRequest::decode(&mut buf, version).ok()?;
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let response = loop {
        let seen = changes.current();
        let response = engine.handle_fetch(&request, version);
        if request.min_bytes <= 0 || answers_now(&response) || Instant::now() >= deadline {
            break response;
        }
        changes.wait_past(seen, deadline);
    };
    let mut out = BytesMut::new();
    let mut response_header = ResponseHeader::default();
    response_header.correlation_id = header.correlation_id;
    response_header
        .encode(&mut out, ApiKey::Fetch.response_header_version(version))
        .ok()?;
    response.encode(&mut out, version).ok()?;
    Some(out.to_vec())
}

/// Whether a Fetch answer has something for the client: records, or an error it must see.
fn answers_now(response: &FetchResponse) -> bool {
    response.error_code != 0
        || response.responses.iter().any(|topic| {
            topic.partitions.iter().any(|partition| {
                partition.error_code != 0
                    || partition.records.as_ref().is_some_and(|r| !r.is_empty())
            })
        })
}
