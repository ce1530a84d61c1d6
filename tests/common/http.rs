//! A tiny HTTP/1.1 file server on 127.0.0.1 for the download tests (one thread per connection,
//! `Range: bytes=N-` support, 404 for unknown paths, optionally slow).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one request asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
}

pub struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Serves `body` at `/<name>`; everything else is 404. With `honor_range` false the server
    /// ignores `Range` and always sends the whole file.
    pub fn start(name: &str, body: Vec<u8>, honor_range: bool) -> Server {
        Server::start_many(vec![(name.to_string(), body)], honor_range)
    }

    /// Serves each `(name, body)` at `/<name>` (a name may hold `/` and `?`).
    pub fn start_many(files: Vec<(String, Vec<u8>)>, honor_range: bool) -> Server {
        Server::start_with(files, honor_range, None)
    }

    /// [`Server::start_many`] (ranges honoured), each body sent `chunk` bytes at a time with
    /// `pause` between.
    pub fn start_throttled(files: Vec<(String, Vec<u8>)>, chunk: usize, pause: Duration) -> Server {
        Server::start_with(files, true, Some((chunk, pause)))
    }

    fn start_with(
        files: Vec<(String, Vec<u8>)>,
        honor_range: bool,
        throttle: Option<(usize, Duration)>,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let routes: HashMap<String, Vec<u8>> = files
            .into_iter()
            .map(|(name, body)| (format!("/{name}"), body))
            .collect();
        let (log, routes) = (seen.clone(), Arc::new(routes));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, routes) = (log.clone(), routes.clone());
                std::thread::spawn(move || {
                    let _ = handle(stream, &routes, honor_range, throttle, &log);
                });
            }
        });
        Server { base, seen }
    }

    /// The server's `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn handle(
    stream: TcpStream,
    routes: &HashMap<String, Vec<u8>>,
    honor_range: bool,
    throttle: Option<(usize, Duration)>,
    log: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let Request { path, range } = read_request(&stream)?;
    log.lock().unwrap().push(Seen {
        path: path.clone(),
        range: range.clone(),
    });
    let mut out = stream;
    let Some(body) = routes.get(&path) else {
        let text = b"not found";
        write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            text.len()
        )?;
        return out.write_all(text);
    };
    let len = body.len();
    let start = range.filter(|_| honor_range).and_then(|r| {
        r.strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse::<usize>()
            .ok()
    });
    match start {
        Some(s) if s >= len => write!(
            out,
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        Some(s) => {
            write!(
                out,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                len - 1,
                len - s
            )?;
            send(&mut out, &body[s..], throttle)
        }
        None => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            )?;
            send(&mut out, body, throttle)
        }
    }
}

fn send(
    out: &mut TcpStream,
    body: &[u8],
    throttle: Option<(usize, Duration)>,
) -> std::io::Result<()> {
    let Some((chunk, pause)) = throttle else {
        return out.write_all(body);
    };
    for piece in body.chunks(chunk.max(1)) {
        out.write_all(piece)?;
        out.flush()?;
        std::thread::sleep(pause);
    }
    Ok(())
}

/// A request as a scripted server sees it.
pub struct Request {
    pub path: String,
    pub range: Option<String>,
}

/// A server on 127.0.0.1 whose every answer is written by `respond` (for misbehaving servers).
pub struct ScriptedServer {
    base: String,
}

impl ScriptedServer {
    pub fn start(
        respond: impl Fn(&Request, &mut TcpStream) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let respond = Arc::new(respond);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let respond = respond.clone();
                std::thread::spawn(move || {
                    let _ = read_request(&stream).and_then(|request| {
                        let mut out = stream;
                        respond(&request, &mut out)
                    });
                });
            }
        });
        ScriptedServer { base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}

fn read_request(stream: &TcpStream) -> std::io::Result<Request> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_string());
        }
    }
    Ok(Request { path, range })
}
