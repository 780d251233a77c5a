//! `create` and `exec` fork, so the library refuses them in a process with
//! more than one thread (a test binary always has at least two: the
//! harness's main thread and the test's).

use std::sync::mpsc;

use rpaas_runtime::CreateOptions;

#[test]
fn create_is_refused_in_a_multi_threaded_process() {
    let (stop, wait) = mpsc::channel::<()>();
    let other = std::thread::spawn(move || wait.recv());
    let root = tempfile::tempdir().unwrap();
    let bundle = tempfile::tempdir().unwrap();
    let err = rpaas_runtime::create(&CreateOptions {
        root: root.path().to_path_buf(),
        id: "threads".into(),
        bundle: bundle.path().to_path_buf(),
        ..Default::default()
    })
    .expect_err("create in a multi-threaded process");
    let text = err.to_string();
    assert!(
        text.starts_with("create: refused in a process with ") && text.contains(" threads"),
        "{text}"
    );
    // Nothing was made under the root.
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    drop(stop);
    let _ = other.join();
}
