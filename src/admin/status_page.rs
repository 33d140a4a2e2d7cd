//! `GET /`: the status page (HTML), moved here unchanged from the former single-file admin module.
//!
//! Owns: the page's HTML. Must not touch: the live state (it only reads the snapshot).

use std::sync::atomic::Ordering;

use crate::proxy::state::Snapshot;

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn status_page(snapshot: &Snapshot) -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\">\
         <title>Ringway status</title><style>body{font:14px system-ui,sans-serif;margin:2em}\
         table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}\
         th{background:#f4f4f4}</style></head><body><h1>Ringway</h1><h2>Listeners</h2><table><tr><th>name</th><th>bind</th></tr>",
    );
    for l in &snapshot.config.listeners {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            escape_html(&l.name),
            l.bind
        ));
    }
    html.push_str("</table><h2>Routes</h2><table><tr><th>name</th><th>path</th><th>target</th></tr>");
    for r in &snapshot.routes {
        let target = match &r.target {
            crate::proxy::state::RouteTarget::Forward { pool, .. } => format!("pool {}", pool.name),
            crate::proxy::state::RouteTarget::Redirect { location, status } => {
                format!(
                    "redirect {} {}",
                    status.as_u16(),
                    location.to_str().unwrap_or("?")
                )
            }
            crate::proxy::state::RouteTarget::Static { dir } => format!("static {}", dir.display()),
        };
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(&r.name),
            escape_html(&r.prefix),
            escape_html(&target)
        ));
    }
    html.push_str("</table>");
    let mut names: Vec<&String> = snapshot.pools.keys().collect();
    names.sort();
    for name in names {
        let Some(p) = snapshot.pools.get(name) else {
            continue;
        };
        html.push_str(&format!(
            "<h2>Pool {}</h2><table><tr><th>server</th><th>address</th><th>state</th><th>health</th>\
             <th>weight</th><th>in flight</th><th>requests</th><th>failures</th></tr>",
            escape_html(name)
        ));
        for s in &p.members.load().servers {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(&s.name),
                escape_html(&s.address),
                s.admin_state().as_str(),
                if s.is_up() { "up" } else { "down" },
                s.weight(),
                s.in_flight.load(Ordering::Relaxed),
                s.requests.load(Ordering::Relaxed),
                s.failures.load(Ordering::Relaxed)
            ));
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    html
}
