//! Static files over real sockets: validators and 304s, ranges, HEAD, precompressed siblings,
//! index files and the slash redirect, percent-encoded names, every way out of the directory
//! refused, and a 200 MiB file streamed with the engine's memory staying flat.

use std::path::{Path, PathBuf};

use crate::common;
use crate::common::edge::{TempDir, one_write};
use crate::common::*;
use ringway::config::{RouteAction, RouteConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "SECRET-outside-the-directory";

/// A directory tree with `www/` (served under `/s/`) and a file beside it that must never be
/// served.
struct Site {
    tmp: TempDir,
}

impl Site {
    fn new(tag: &str) -> Site {
        let tmp = TempDir::new(tag);
        let root = tmp.0.clone();
        let www = root.join("www");
        for dir in ["sub", "empty"] {
            std::fs::create_dir_all(www.join(dir)).expect("mkdir");
        }
        std::fs::create_dir_all(root.join("private")).expect("mkdir");
        for (name, text) in [
            ("hello.txt", "hello, world\n"),
            ("hello world.txt", "spaced\n"),
            ("index.html", "<h1>home</h1>\n"),
            ("sub/index.html", "<h1>sub</h1>\n"),
            ("plain.css", "body { color: red }\n"),
            ("data.unknownext", "raw\n"),
            ("app.js", "console.log('identity');\n"),
            ("app.js.br", "BROTLI-BYTES"),
            ("app.js.gz", "GZIP-BYTES!"),
            ("page.html", "<p>only gzip</p>\n"),
            ("page.html.gz", "GZ-PAGE"),
        ] {
            std::fs::write(www.join(name), text).expect("write");
        }
        std::fs::write(root.join("outside.txt"), SECRET).expect("write");
        std::fs::write(root.join("private/outside.txt"), SECRET).expect("write");
        let link =
            |target: &Path, name: &str| std::os::unix::fs::symlink(target, www.join(name)).expect("symlink");
        link(Path::new("../outside.txt"), "escape");
        link(&root.join("outside.txt"), "escape_abs");
        link(Path::new("../private"), "escape_dir");
        link(Path::new("hello.txt"), "inner");
        link(&www.join("hello.txt"), "inner_abs");
        // A sibling that points outside is never sent: the file itself is.
        std::fs::write(www.join("lure.txt"), "lure\n").expect("write");
        link(&root.join("outside.txt"), "lure.txt.gz");
        Site { tmp }
    }

    fn www(&self) -> PathBuf {
        self.tmp.0.join("www")
    }

    /// Ringway serving `www/` under `/s/` and under `/`.
    fn proxy(&self) -> Proxy {
        let mut c = base_config();
        for (name, path) in [("files", "/s/"), ("root", "/")] {
            c.routes.push(RouteConfig {
                name: name.into(),
                host: None,
                path: path.into(),
                action: RouteAction::Static { dir: self.www() },
                maintenance: None,
                reject_encoded_slash: false,
            });
        }
        Proxy::start(c)
    }
}

async fn get(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = client().get(proxy.url(path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    send(req).await
}

/// One request written as raw bytes (so that no client library normalises the path).
async fn raw_get(proxy: &Proxy, target: &str) -> common::edge::RawResponse {
    let request = format!("GET {target} HTTP/1.1\r\nHost: files\r\nConnection: close\r\n\r\n");
    one_write(proxy.addr, request.as_bytes()).await
}

#[tokio::test]
async fn serves_files_with_their_type_length_and_validators() {
    bounded(async {
        let site = Site::new("static-basic");
        let proxy = site.proxy();
        let r = get(&proxy, "/s/hello.txt", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello, world\n");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("content-length"), Some("13"));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(r.header("vary"), None, "no sibling, no Vary");
        let meta = std::fs::metadata(site.www().join("hello.txt")).expect("stat");
        let mtime = meta
            .modified()
            .expect("mtime")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch");
        assert_eq!(
            r.header("etag"),
            Some(format!("\"{:x}-d\"", mtime.as_secs()).as_str())
        );
        let last_modified = r.header("last-modified").expect("Last-Modified");
        let parsed = httpdate::parse_http_date(last_modified).expect("an HTTP date");
        assert_eq!(
            parsed
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs()),
            Some(mtime.as_secs())
        );

        for (path, ty) in [
            ("/s/plain.css", "text/css; charset=utf-8"),
            ("/s/index.html", "text/html; charset=utf-8"),
            ("/s/app.js", "text/javascript; charset=utf-8"),
            ("/s/data.unknownext", "application/octet-stream"),
        ] {
            let r = get(&proxy, path, &[]).await;
            assert_eq!((r.status, r.header("content-type")), (200, Some(ty)), "{path}");
        }
        // A percent-encoded name is decoded before it is looked up.
        let r = get(&proxy, "/s/hello%20world.txt", &[]).await;
        assert_eq!((r.status, r.text().as_str()), (200, "spaced\n"));
        // A symlink that stays inside is followed, relative or absolute.
        for path in ["/s/inner", "/s/inner_abs"] {
            let r = get(&proxy, path, &[]).await;
            assert_eq!((r.status, r.text().as_str()), (200, "hello, world\n"), "{path}");
        }
        let r = get(&proxy, "/s/missing.txt", &[]).await;
        assert_eq!((r.status, r.text().as_str()), (404, "404 Not Found\n"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn answers_304_to_either_validator() {
    bounded(async {
        let site = Site::new("static-304");
        let proxy = site.proxy();
        let first = get(&proxy, "/s/hello.txt", &[]).await;
        let etag = first.header("etag").expect("ETag").to_owned();
        let date = first.header("last-modified").expect("Last-Modified").to_owned();
        let weak = format!("W/{etag}");
        let listed = format!("\"nope\", {etag}");
        for headers in [
            vec![("if-none-match", etag.as_str())],
            vec![("if-none-match", weak.as_str())],
            vec![("if-none-match", listed.as_str())],
            vec![("if-modified-since", date.as_str())],
            vec![("if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT")],
            // If-None-Match decides; the date is not looked at.
            vec![
                ("if-none-match", etag.as_str()),
                ("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT"),
            ],
        ] {
            let r = get(&proxy, "/s/hello.txt", &headers).await;
            assert_eq!(r.status, 304, "{headers:?}");
            assert!(r.body.is_empty());
            assert_eq!(r.header("etag"), Some(etag.as_str()));
            assert_eq!(r.header("last-modified"), Some(date.as_str()));
        }
        for headers in [
            vec![("if-none-match", "\"other\"")],
            vec![("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
            vec![
                ("if-none-match", "\"other\""),
                ("if-modified-since", date.as_str()),
            ],
        ] {
            let r = get(&proxy, "/s/hello.txt", &headers).await;
            assert_eq!(
                (r.status, r.text().as_str()),
                (200, "hello, world\n"),
                "{headers:?}"
            );
        }
        let r = get(&proxy, "/s/hello.txt", &[("if-match", "\"other\"")]).await;
        assert_eq!(r.status, 412);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn serves_single_byte_ranges() {
    bounded(async {
        let site = Site::new("static-range");
        let proxy = site.proxy();
        let whole = "hello, world\n";
        let first = get(&proxy, "/s/hello.txt", &[]).await;
        let etag = first.header("etag").expect("ETag").to_owned();
        let date = first.header("last-modified").expect("Last-Modified").to_owned();
        for (range, content_range, body) in [
            ("bytes=0-4", "bytes 0-4/13", "hello"),
            ("bytes=7-", "bytes 7-12/13", "world\n"),
            ("bytes=-6", "bytes 7-12/13", "world\n"),
            ("bytes=-100", "bytes 0-12/13", whole),
            ("bytes=12-99", "bytes 12-12/13", "\n"),
        ] {
            let r = get(&proxy, "/s/hello.txt", &[("range", range)]).await;
            assert_eq!(r.status, 206, "{range}");
            assert_eq!(r.header("content-range"), Some(content_range), "{range}");
            assert_eq!(r.header("content-length"), Some(body.len().to_string().as_str()));
            assert_eq!(r.text(), body, "{range}");
            assert_eq!(r.header("etag"), Some(etag.as_str()));
        }
        for range in ["bytes=13-", "bytes=100-200", "bytes=-0"] {
            let r = get(&proxy, "/s/hello.txt", &[("range", range)]).await;
            assert_eq!(r.status, 416, "{range}");
            assert_eq!(r.header("content-range"), Some("bytes */13"), "{range}");
        }
        // Several ranges, another unit, bad syntax: the whole file.
        for range in ["bytes=0-1,4-5", "lines=1-2", "bytes=5-1", "bytes=x-"] {
            let r = get(&proxy, "/s/hello.txt", &[("range", range)]).await;
            assert_eq!((r.status, r.text().as_str()), (200, whole), "{range}");
        }
        // If-Range: the range only while the validator is current.
        for (if_range, status) in [
            (etag.as_str(), 206),
            (date.as_str(), 206),
            ("\"old\"", 200),
            ("Thu, 01 Jan 1970 00:00:00 GMT", 200),
        ] {
            let r = get(
                &proxy,
                "/s/hello.txt",
                &[("range", "bytes=0-4"), ("if-range", if_range)],
            )
            .await;
            assert_eq!(r.status, status, "If-Range {if_range}");
            assert_eq!(r.text(), if status == 206 { "hello" } else { whole });
        }
        proxy.stop().await;
    })
    .await;
}

/// Files over 64 KiB go to a plain HTTP/1.1 client with `sendfile`: whole, from an offset, and
/// with the keep-alive connection's next request framed right after them.
#[tokio::test]
async fn large_files_go_with_sendfile_whole_and_in_ranges() {
    bounded(async {
        let site = Site::new("static-sendfile");
        let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(site.www().join("large.bin"), &data).expect("write");
        let proxy = site.proxy();
        let client = client();
        for _ in 0..2 {
            let r = send(client.get(proxy.url("/s/large.bin"))).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-length"), Some("1500000"));
            assert!(r.body == data, "the whole file, byte for byte");
            let r = send(
                client
                    .get(proxy.url("/s/large.bin"))
                    .header("range", "bytes=100000-1299999"),
            )
            .await;
            assert_eq!(r.status, 206);
            assert_eq!(r.header("content-range"), Some("bytes 100000-1299999/1500000"));
            assert!(r.body == data[100_000..1_300_000], "the range, byte for byte");
            // The same keep-alive connection answers the next request after the file.
            let r = send(client.get(proxy.url("/s/hello.txt"))).await;
            assert_eq!((r.status, r.text().as_str()), (200, "hello, world\n"));
        }
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn head_sends_no_body_and_other_methods_are_405() {
    bounded(async {
        let site = Site::new("static-head");
        let proxy = site.proxy();
        // HEAD then GET on one connection: the GET's answer must start right after the HEAD's
        // head, so the HEAD answer carried no body bytes.
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        s.write_all(b"HEAD /s/hello.txt HTTP/1.1\r\nHost: f\r\n\r\nGET /s/plain.css HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        let text = String::from_utf8_lossy(&buf);
        let (head, rest) = text.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 200"), "{text}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("content-length: 13"), "{head}");
        assert!(head.contains("accept-ranges: bytes"), "{head}");
        assert!(rest.starts_with("HTTP/1.1 200"), "HEAD sent a body: {text}");
        assert!(rest.ends_with("body { color: red }\n"), "{rest}");

        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let r = send(client().request(m, proxy.url("/s/hello.txt"))).await;
            assert_eq!(r.status, 405, "{method}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
        }
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn files_are_served_over_http2_too() {
    bounded(async {
        let site = Site::new("static-h2");
        let proxy = site.proxy();
        let h2 = reqwest::Client::builder()
            .no_proxy()
            .http2_prior_knowledge()
            .build()
            .expect("h2 client");
        let resp = h2.get(proxy.url("/s/hello.txt")).send().await.expect("h2 GET");
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        let r = Reply::read(resp).await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello, world\n"));
        let r = send(h2.head(proxy.url("/s/hello.txt"))).await;
        assert_eq!(
            (r.status, r.header("content-length"), r.body.len()),
            (200, Some("13"), 0)
        );
        let r = send(h2.get(proxy.url("/s/hello.txt")).header("range", "bytes=-6")).await;
        assert_eq!((r.status, r.text().as_str()), (206, "world\n"));
        let etag = r.header("etag").expect("ETag").to_owned();
        let r = send(h2.get(proxy.url("/s/hello.txt")).header("if-none-match", etag)).await;
        assert_eq!((r.status, r.body.len()), (304, 0));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn precompressed_siblings_are_served_with_vary() {
    bounded(async {
        let site = Site::new("static-sibling");
        let proxy = site.proxy();
        let js = "text/javascript; charset=utf-8";
        for (accept, body, encoding) in [
            (Some("gzip, deflate, br"), "BROTLI-BYTES", Some("br")),
            (Some("gzip"), "GZIP-BYTES!", Some("gzip")),
            (Some("br;q=0, gzip"), "GZIP-BYTES!", Some("gzip")),
            (Some("gzip;q=0.5, br;q=0.4"), "GZIP-BYTES!", Some("gzip")),
            (Some("identity"), "console.log('identity');\n", None),
            (None, "console.log('identity');\n", None),
        ] {
            let headers: Vec<(&str, &str)> = accept.map(|a| ("accept-encoding", a)).into_iter().collect();
            let r = get(&proxy, "/s/app.js", &headers).await;
            assert_eq!((r.status, r.text().as_str()), (200, body), "{accept:?}");
            assert_eq!(r.header("content-encoding"), encoding, "{accept:?}");
            assert_eq!(r.header("content-type"), Some(js), "the original's type");
            assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{accept:?}");
            assert_eq!(r.header("content-length"), Some(body.len().to_string().as_str()));
        }
        // Ranges apply to the sibling's bytes.
        let r = get(
            &proxy,
            "/s/app.js",
            &[("accept-encoding", "br"), ("range", "bytes=0-5")],
        )
        .await;
        assert_eq!(r.status, 206);
        assert_eq!(r.header("content-range"), Some("bytes 0-5/12"));
        assert_eq!(r.text(), "BROTLI");
        // Each representation has its own tag: a 304 only for the one the client holds.
        let br = get(&proxy, "/s/app.js", &[("accept-encoding", "br")]).await;
        let br_tag = br.header("etag").expect("ETag");
        let again = get(
            &proxy,
            "/s/app.js",
            &[("accept-encoding", "br"), ("if-none-match", br_tag)],
        )
        .await;
        assert_eq!(
            (again.status, again.header("vary")),
            (304, Some("Accept-Encoding"))
        );
        let plain = get(&proxy, "/s/app.js", &[("if-none-match", br_tag)]).await;
        assert_eq!(plain.status, 200);
        // Only a .gz beside page.html; a client asking for br gets the original.
        let r = get(&proxy, "/s/page.html", &[("accept-encoding", "br")]).await;
        assert_eq!(
            (r.status, r.header("content-encoding"), r.header("vary")),
            (200, None, Some("Accept-Encoding"))
        );
        let r = get(&proxy, "/s/page.html", &[("accept-encoding", "gzip")]).await;
        assert_eq!(
            (r.text().as_str(), r.header("content-encoding")),
            ("GZ-PAGE", Some("gzip"))
        );
        // A sibling that is a symlink out of the directory is never sent.
        let r = get(&proxy, "/s/lure.txt", &[("accept-encoding", "gzip")]).await;
        assert_eq!(
            (r.status, r.text().as_str(), r.header("content-encoding")),
            (200, "lure\n", None)
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn directories_answer_their_index_or_a_redirect_adding_the_slash() {
    bounded(async {
        let site = Site::new("static-index");
        let proxy = site.proxy();
        let r = get(&proxy, "/s/", &[]).await;
        assert_eq!((r.status, r.text().as_str()), (200, "<h1>home</h1>\n"));
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let r = get(&proxy, "/s/sub/", &[]).await;
        assert_eq!((r.status, r.text().as_str()), (200, "<h1>sub</h1>\n"));
        let r = get(&proxy, "/s/sub", &[]).await;
        assert_eq!((r.status, r.header("location")), (301, Some("/s/sub/")));
        let r = get(&proxy, "/s/sub?page=2&q=a%20b", &[]).await;
        assert_eq!(
            (r.status, r.header("location")),
            (301, Some("/s/sub/?page=2&q=a%20b"))
        );
        // A directory with no index, a file asked for as a directory.
        assert_eq!(get(&proxy, "/s/empty/", &[]).await.status, 404);
        assert_eq!(get(&proxy, "/s/hello.txt/", &[]).await.status, 404);
        // Routing merged the slashes (`route::normalize`) before the files were looked up.
        let r = raw_get(&proxy, "/s//sub").await;
        assert_eq!((r.status, r.header("location")), (Some(301), Some("/s/sub/")));
        // Leading slashes cannot turn the redirect into one to another host.
        let r = raw_get(&proxy, "//sub").await;
        assert_eq!((r.status, r.header("location")), (Some(301), Some("/sub/")));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn every_way_out_of_the_directory_is_refused() {
    bounded(async {
        let site = Site::new("static-escape");
        let proxy = site.proxy();
        for target in [
            "/s/../outside.txt",
            "/s/sub/../../outside.txt",
            "/s/./../outside.txt",
            "/s/%2e%2e/outside.txt",
            "/s/%2E%2E/outside.txt",
            "/s/.%2e/outside.txt",
            "/s/%2e%2e%2foutside.txt",
            "/s/sub%2f%2e%2e%2f%2e%2e%2foutside.txt",
            "/s/%252e%252e%252foutside.txt",
            "/s/%252e%252e/outside.txt",
            "/s/..%5coutside.txt",
            "/s/..%5c..%5coutside.txt",
            "/s/..\\outside.txt",
            "/s/sub\\..\\..\\outside.txt",
            "/s/%00",
            "/s/hello.txt%00.css",
            "/s/escape",
            "/s/escape_abs",
            "/s/escape_dir/outside.txt",
            "/s/%2Fetc%2Fpasswd",
            "/s//etc/passwd",
            "/..%2foutside.txt",
        ] {
            let r = raw_get(&proxy, target).await;
            assert_eq!(r.status, Some(404), "{target}: {}", r.head);
            let body = String::from_utf8_lossy(&r.body);
            assert_eq!(body, "404 Not Found\n", "{target}");
            assert!(!r.head.contains(SECRET));
        }
        // A `..` above the root is refused by routing itself (400), before any file is sought.
        for target in ["/../outside.txt", "/%2e%2e/outside.txt", "/s/../../outside.txt"] {
            let r = raw_get(&proxy, target).await;
            assert_eq!(r.status, Some(400), "{target}: {}", r.head);
            assert!(!String::from_utf8_lossy(&r.body).contains(SECRET), "{target}");
        }
        proxy.stop().await;
    })
    .await;
}

/// The resident set of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// Measured on a `ringway run` process of its own: the tests of this binary share one process,
/// whose memory moves with whatever the others do.
#[tokio::test]
async fn a_200_mib_file_streams_with_flat_memory() {
    bounded(async {
        const SIZE: u64 = 200 * 1024 * 1024;
        let site = Site::new("static-big");
        let file = std::fs::File::create(site.www().join("big.bin")).expect("create");
        // Sparse: no disk is used, every byte reads as zero; the last one is written.
        file.set_len(SIZE - 1).expect("set_len");
        drop(file);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(site.www().join("big.bin"))
            .expect("open");
        std::io::Write::write_all(&mut f, b"Z").expect("write");
        drop(f);
        let config = site.tmp.0.join("ringway.toml");
        std::fs::write(
            &config,
            format!(
                "workers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n\
                 [[listener]]\nname = \"files\"\nbind = \"127.0.0.1:0\"\n\
                 [[route]]\npath = \"/s/\"\nstatic_dir = \"{}\"\n",
                site.www().display()
            ),
        )
        .expect("write config");
        let mut child = ringway_command()
            .arg("run")
            .arg("-c")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn ringway run");
        let pid = child.id().expect("pid");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr: std::net::SocketAddr = loop {
            let line = lines
                .next_line()
                .await
                .expect("stderr")
                .expect("ringway exited early");
            if let Some(a) = address_after(&line, "listener `files` on http://") {
                break a.parse().expect("listener address");
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let one = |target: &'static str| async move {
            let request = format!("GET {target} HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n");
            one_write(addr, request.as_bytes()).await
        };
        // One small answer first, so the connection's and the worker's first allocations are
        // in the baseline.
        assert_eq!(one("/s/hello.txt").await.status, Some(200));
        let before = rss(pid);

        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /s/big.bin HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut buf = vec![0u8; 64 * 1024];
        let mut head = Vec::new();
        let body_start = loop {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before the head");
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head_text = String::from_utf8_lossy(&head[..body_start]).to_ascii_lowercase();
        assert!(head_text.starts_with("http/1.1 200"), "{head_text}");
        assert!(
            head_text.contains(&format!("content-length: {SIZE}")),
            "{head_text}"
        );
        let mut received = (head.len() - body_start) as u64;
        let mut last = head.last().copied();
        let mut peak = rss(pid);
        let mut next_sample = 8 * 1024 * 1024;
        loop {
            let n = s.read(&mut buf).await.expect("read body");
            if n == 0 {
                break;
            }
            received += n as u64;
            last = Some(buf[n - 1]);
            if received >= next_sample {
                peak = peak.max(rss(pid));
                next_sample += 8 * 1024 * 1024;
            }
        }
        peak = peak.max(rss(pid));
        assert_eq!(received, SIZE, "every byte, then the close");
        assert_eq!(last, Some(b'Z'), "the last byte is the file's");
        let growth = peak.saturating_sub(before);
        assert!(
            growth < 32 * 1024 * 1024,
            "RSS grew by {} MiB while 200 MiB were served ({} MiB before)",
            growth / (1024 * 1024),
            before / (1024 * 1024),
        );
        terminate_gracefully(&mut child).await;
    })
    .await;
}

#[tokio::test]
async fn a_missing_static_dir_stops_the_engine_from_starting() {
    let mut c = base_config();
    c.routes.push(RouteConfig {
        name: "files".into(),
        host: None,
        path: "/".into(),
        action: RouteAction::Static {
            dir: PathBuf::from("/nonexistent/ringway-static-test"),
        },
        maintenance: None,
        reject_encoded_slash: false,
    });
    let text = match ringway::proxy::Engine::start(c, Some(1), None) {
        Ok(_) => panic!("an engine started on a static_dir that does not exist"),
        Err(e) => e.to_string(),
    };
    assert!(
        text.contains("static_dir") && text.contains("cannot be opened"),
        "{text}"
    );
}
