//! `extends` within a file and from other files, through [`super::super::convert_files`].

use std::path::{Path, PathBuf};

use crate::convert::{Conversion, Error, Options, convert_files};
use crate::manifest::{ContainerSpec, Manifest};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, text).expect("write");
    p
}

fn convert(files: &[PathBuf]) -> Result<Conversion, Error> {
    convert_files(files, &Options::default())
}

fn container<'a>(c: &'a Conversion, service: &str) -> &'a ContainerSpec {
    c.objects
        .iter()
        .find_map(|o| match &o.manifest {
            Manifest::Container(m) if o.from == format!("services.{service}") => Some(&m.spec),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no container of {service}"))
}

fn env<'a>(spec: &'a ContainerSpec, key: &str) -> Option<&'a str> {
    spec.env.get(key).map(String::as_str)
}

#[test]
fn a_service_extends_one_of_its_file_and_one_of_another_file_recursively() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(
        d,
        "lib/common.yaml",
        "services:\n  base:\n    image: base:1\n    environment: {LEVEL: base, FROM: base}\n    volumes: [\"./conf:/etc/app:ro\"]\n    env_file: base.env\n  logger:\n    extends: base\n    environment: {LEVEL: logger}\n    dns: 1.1.1.1\n",
    );
    write(d, "lib/base.env", "X=1\n");
    let main = write(
        d,
        "compose.yaml",
        "services:\n  web:\n    extends: {file: lib/common.yaml, service: logger}\n    environment: [OWN=1]\n    command: [run]\n  worker:\n    extends: {service: web}\n    command: [work]\n",
    );
    let c = convert(&[main]).unwrap_or_else(|e| panic!("{e}"));
    let web = container(&c, "web");
    assert_eq!(web.image, "base:1");
    assert_eq!(env(web, "LEVEL"), Some("logger"));
    assert_eq!(env(web, "FROM"), Some("base"));
    assert_eq!(env(web, "OWN"), Some("1"));
    assert_eq!(web.command, Some(vec!["run".to_string()]));
    assert_eq!(web.dns, [std::net::IpAddr::from([1, 1, 1, 1])]);
    // Paths of the extended file are relative to its own directory.
    let lib = dir.path().join("lib");
    assert_eq!(web.env_files, [lib.join("base.env")]);
    let binds: Vec<String> = web
        .volumes
        .iter()
        .map(|v| serde_json::to_value(v).expect("json").to_string())
        .collect();
    assert!(
        binds[0].contains(&lib.join("conf").display().to_string()),
        "{binds:?}"
    );
    let worker = container(&c, "worker");
    assert_eq!(worker.command, Some(vec!["work".to_string()]));
    assert_eq!(env(worker, "OWN"), Some("1"));
    assert_eq!(env(worker, "LEVEL"), Some("logger"));
    // Keys taken from common.yaml are reported at their place there; `extends` is no longer a
    // key that is not carried over.
    assert!(
        c.not_carried.iter().all(|n| !n.key.ends_with("extends")),
        "{:#?}",
        c.not_carried
    );
    assert!(c.files.iter().any(|f| f.ends_with("lib/common.yaml")));
}

#[test]
fn a_cycle_is_refused_naming_its_services() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = write(
        dir.path(),
        "compose.yaml",
        "services:\n  a:\n    image: x:1\n    extends: b\n  b:\n    extends: {service: c, file: other.yaml}\n",
    );
    write(
        dir.path(),
        "other.yaml",
        "services:\n  c:\n    extends: {service: a, file: compose.yaml}\n",
    );
    let e = convert(std::slice::from_ref(&main))
        .expect_err("cycle")
        .to_string();
    assert!(e.contains("cycle"), "{e}");
    assert!(
        e.contains("a (") && e.contains("b (") && e.contains("c ("),
        "{e}"
    );
    let own = write(
        dir.path(),
        "self.yaml",
        "services:\n  a:\n    image: x:1\n    extends: a\n",
    );
    let e = convert(std::slice::from_ref(&own))
        .expect_err("self")
        .to_string();
    assert!(
        e.starts_with(&format!("{}:4:5: ", own.display())) && e.contains("cycle"),
        "{e}"
    );
}

#[test]
fn a_missing_service_or_file_is_refused_at_the_extends_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = write(
        dir.path(),
        "compose.yaml",
        "services:\n  a:\n    image: x:1\n  b:\n    extends: {service: nope}\n",
    );
    let e = convert(std::slice::from_ref(&main))
        .expect_err("missing")
        .to_string();
    assert!(
        e.starts_with(&format!("{}:5:5: ", main.display()))
            && e.contains("no service \"nope\"")
            && e.contains("it has a, b"),
        "{e}"
    );
    let main = write(
        dir.path(),
        "compose.yaml",
        "services:\n  b:\n    extends: {service: a, file: gone.yaml}\n",
    );
    let e = convert(std::slice::from_ref(&main))
        .expect_err("missing file")
        .to_string();
    assert!(
        e.starts_with(&format!("{}:3:5: ", main.display())) && e.contains("gone.yaml"),
        "{e}"
    );
    write(
        dir.path(),
        "other.yaml",
        "services:\n  z:\n    image: z:1\n",
    );
    let main = write(
        dir.path(),
        "compose.yaml",
        "services:\n  b:\n    extends: {service: a, file: other.yaml}\n",
    );
    let e = convert(&[main]).expect_err("missing in file").to_string();
    assert!(
        e.contains("no service \"a\"") && e.contains("other.yaml"),
        "{e}"
    );
}

#[test]
fn reports_name_the_file_each_key_is_written_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = write(
        dir.path(),
        "compose.yaml",
        "services:\n  web:\n    image: x:1\n    tty: true\n",
    );
    write(
        dir.path(),
        "common.yaml",
        "services:\n  b:\n    image: x:1\n    stdin_open: true\n",
    );
    let over = write(
        dir.path(),
        "dev.yaml",
        "services:\n  web:\n    pid: host\n  other:\n    extends: {service: b, file: common.yaml}\n",
    );
    let c = convert(&[base.clone(), over.clone()]).unwrap_or_else(|e| panic!("{e}"));
    let at = |key: &str| {
        let n = c
            .not_carried
            .iter()
            .find(|n| n.key == key)
            .unwrap_or_else(|| panic!("{key}: {:#?}", c.not_carried));
        (n.file.clone(), n.line, n.col)
    };
    assert_eq!(at("services.web.tty"), (base.clone(), 4, 5));
    assert_eq!(at("services.web.pid"), (over.clone(), 3, 5));
    assert_eq!(
        at("services.other.stdin_open"),
        (dir.path().join("common.yaml"), 4, 5)
    );
    let web = c
        .objects
        .iter()
        .find(|o| o.from == "services.web")
        .expect("web");
    assert_eq!((web.file.clone(), web.line), (base, 2));
    // A variable that fails names the file it is in.
    let bad = write(
        dir.path(),
        "bad.yaml",
        "services:\n  web:\n    image: ${NOPE:?set it}\n",
    );
    let e = convert(&[dir.path().join("compose.yaml"), bad.clone()])
        .expect_err("unset")
        .to_string();
    assert!(e.starts_with(&format!("{}:3:12: ", bad.display())), "{e}");
}

#[test]
fn a_chain_too_long_and_a_file_that_is_not_one_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // s0 extends s1 ... extends s70: each is resolved through all those after it.
    let mut text = String::from("services:\n");
    for i in 0..70 {
        text.push_str(&format!("  s{i}:\n    extends: s{}\n", i + 1));
    }
    text.push_str("  s70:\n    image: x:1\n");
    let main = write(dir.path(), "compose.yaml", &text);
    let e = convert(std::slice::from_ref(&main))
        .expect_err("too deep")
        .to_string();
    assert!(e.contains("more than 64"), "{e}");
    let main = write(
        dir.path(),
        "compose.yaml",
        "services:\n  a:\n    extends: {file: /dev/zero, service: x}\n",
    );
    let e = convert(std::slice::from_ref(&main))
        .expect_err("zero")
        .to_string();
    assert!(e.contains("/dev/zero:1:1: larger than 16 MiB"), "{e}");
}
