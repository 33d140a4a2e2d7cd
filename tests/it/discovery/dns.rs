//! The test's DNS server (hickory-server on 127.0.0.1, UDP and TCP on one port, answering
//! from a map the test changes) and a capture of Ringway's log lines.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

/// What the DNS server answers: records by (lower-case name, type), additional records for
/// SRV answers, or SERVFAIL for everything.
#[derive(Default)]
struct Zone {
    records: HashMap<(String, RecordType), Vec<Record>>,
    additionals: HashMap<String, Vec<Record>>,
    /// Names that exist (NOERROR without records of an absent type, not NXDOMAIN).
    names: HashSet<String>,
    servfail: bool,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn fqdn(name: &str) -> Name {
    Name::from_ascii(format!("{}.", key(name))).expect("a DNS name")
}

struct Handler {
    zone: Arc<Mutex<Zone>>,
    queries: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::SeqCst);
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = true;
        let Ok(info) = request.request_info() else {
            metadata.response_code = ResponseCode::FormErr;
            return respond(&mut response, builder.build_no_records(metadata)).await;
        };
        let (answers, additionals) = {
            let zone = self.zone.lock().expect("zone");
            let name = key(&info.query.original().name().to_ascii());
            let rtype = info.query.original().query_type();
            if zone.servfail {
                metadata.response_code = ResponseCode::ServFail;
                (Vec::new(), Vec::new())
            } else if !zone.names.contains(&name) {
                metadata.response_code = ResponseCode::NXDomain;
                (Vec::new(), Vec::new())
            } else {
                let answers = zone
                    .records
                    .get(&(name.clone(), rtype))
                    .cloned()
                    .unwrap_or_default();
                let additionals = if rtype == RecordType::SRV {
                    zone.additionals.get(&name).cloned().unwrap_or_default()
                } else {
                    Vec::new()
                };
                (answers, additionals)
            }
        };
        let message = builder.build(metadata, answers.iter(), [].iter(), [].iter(), additionals.iter());
        respond(&mut response, message).await
    }
}

async fn respond<'a, R: ResponseHandler>(
    response: &mut R,
    message: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    response.send_response(message).await.expect("DNS response sent")
}

/// An authoritative DNS server for the test's names on 127.0.0.1 (UDP and TCP, one port).
pub struct Dns {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<AtomicUsize>,
    server: Option<Server<Handler>>,
}

impl Dns {
    pub async fn start() -> Dns {
        let zone = Arc::new(Mutex::new(Zone::default()));
        let queries = Arc::new(AtomicUsize::new(0));
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS UDP");
            let addr = udp.local_addr().expect("DNS address");
            // The same port for TCP (answers too large for UDP come over it); retried if taken.
            let Ok(tcp) = TcpListener::bind(addr).await else {
                continue;
            };
            let mut dns = Dns {
                addr,
                zone: zone.clone(),
                queries: queries.clone(),
                server: None,
            };
            dns.serve(udp, tcp);
            return dns;
        }
        panic!("no free port for UDP and TCP at once");
    }

    fn serve(&mut self, udp: UdpSocket, tcp: TcpListener) {
        let mut server = Server::new(Handler {
            zone: self.zone.clone(),
            queries: self.queries.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64 * 1024);
        self.server = Some(server);
    }

    /// Stops answering: the sockets close, so queries are refused.
    pub async fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.shutdown_gracefully().await;
        }
    }

    /// Answers again on the same port.
    pub async fn restart(&mut self) {
        let udp = UdpSocket::bind(self.addr).await.expect("rebind DNS UDP");
        let tcp = TcpListener::bind(self.addr).await.expect("rebind DNS TCP");
        self.serve(udp, tcp);
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    fn edit(&self, f: impl FnOnce(&mut Zone)) {
        f(&mut self.zone.lock().expect("zone"));
    }

    /// `name` has exactly these A records (none: it exists without any).
    pub fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        let records = ips
            .iter()
            .map(|ip| Record::from_rdata(fqdn(name), 0, RData::A(A(*ip))))
            .collect();
        self.edit(|z| {
            z.names.insert(key(name));
            z.records.insert((key(name), RecordType::A), records);
        });
    }

    /// `name` has these SRV records `(priority, weight, port, target)`, with the addresses of
    /// the targets in `glue` sent in the additional section.
    pub fn set_srv(&self, name: &str, records: &[(u16, u16, u16, &str)], glue: &[(&str, Ipv4Addr)]) {
        let srv = records
            .iter()
            .map(|(p, w, port, target)| {
                Record::from_rdata(fqdn(name), 0, RData::SRV(SRV::new(*p, *w, *port, fqdn(target))))
            })
            .collect();
        let additionals = glue
            .iter()
            .map(|(target, ip)| Record::from_rdata(fqdn(target), 0, RData::A(A(*ip))))
            .collect();
        self.edit(|z| {
            z.names.insert(key(name));
            z.records.insert((key(name), RecordType::SRV), srv);
            z.additionals.insert(key(name), additionals);
        });
    }

    /// `name` no longer exists (NXDOMAIN).
    pub fn remove(&self, name: &str) {
        self.edit(|z| {
            z.names.remove(&key(name));
            z.records.retain(|(n, _), _| *n != key(name));
        });
    }

    pub fn servfail(&self, on: bool) {
        self.edit(|z| z.servfail = on);
    }
}

// ---------------------------------------------------------------------------------------------
// Log capture (to see an outage logged once)
// ---------------------------------------------------------------------------------------------

/// Starts capturing the log (see `common::logs`).
pub fn log() {
    crate::common::logs::capture_logs();
}

/// Log lines containing every one of `parts`.
pub fn log_lines(parts: &[&str]) -> usize {
    crate::common::logs::logged(parts).len()
}
