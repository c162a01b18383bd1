//! Interrupts (issue 21, defect 4): SIGINT or SIGTERM at any point of a
//! run, the write phase included, leaves the previous output folder exactly
//! as it was or the new run's complete set, never a mix, and no temporary
//! files; the process exits with 130 or 143 and one line (or 0, when the
//! signal came after the run had finished).

use super::{rain, scratch, slice, text};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The files of an output folder with their bytes (empty if it is absent).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
            })
            .collect()
        })
        .unwrap_or_default()
}

#[cfg(unix)]
#[test]
fn an_interrupt_at_any_point_leaves_the_old_set_or_the_new_one() {
    let d = scratch("interrupts");
    let data = slice(&d);
    let out = d.join("out");
    // Each file write takes 150 ms more (a test hook of debug builds), so
    // that the write phase is long enough to be hit.
    let run = |seed: &str| {
        let mut c = rain();
        c.args(["--data", data.to_str().unwrap(), "--epochs", "2", "--quiet", "--seed", seed, "--out"])
            .arg(&out)
            .env("RAIN_TEST_WRITE_DELAY_MS", "150");
        // rain keeps a signal its parent ignores ignored (SIGINT in a
        // shell's background job), so the test must not depend on how it
        // was started: the child gets the default dispositions back.
        // SAFETY: `signal` is async-signal-safe, as `pre_exec` requires.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                Ok(())
            });
        }
        c
    };
    let start = Instant::now();
    let o = run("0").output().unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let full = start.elapsed();
    let old = files(&out);
    assert_eq!(old.len(), 6, "{:?}", old.keys());
    // Signals at eight points spread over the run, then fourteen inside the
    // write phase: after the staging folder holds 0, 1, ..., 6 files (each
    // write is followed by the hook's pause, so the signal lands there).
    let mut points: Vec<(Option<Duration>, usize)> =
        (1..9).map(|k| (Some(full.mul_f64(k as f64 / 9.0)), 0)).collect();
    points.extend((0..14).map(|k| (None, k % 7)));
    let (mut interrupted, mut finished) = (0, 0);
    // Each point's outcome, for the message when too few interrupted.
    let mut outcomes = Vec::new();
    for (i, &(delay, written)) in points.iter().enumerate() {
        let before = files(&out);
        let child = run(&(i + 1).to_string()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        match delay {
            Some(t) => std::thread::sleep(t),
            None => {
                let staging = d.join(format!(".out.tmp-{}", child.id()));
                let t0 = Instant::now();
                while std::fs::read_dir(&staging).map_or(true, |rd| rd.count() < written)
                    && t0.elapsed() < Duration::from_secs(60)
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        let delay = (delay, written);
        let sig = if i % 2 == 0 { libc::SIGINT } else { libc::SIGTERM };
        // SAFETY: signals a child process this test spawned and still owns.
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        let o = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        outcomes.push(format!("{delay:?} -> {:?}", o.status.code()));
        let after = files(&out);
        match o.status.code() {
            Some(0) => {
                finished += 1;
                assert_eq!(after.len(), 6, "{delay:?}: finished with {:?}", after.keys());
            }
            Some(code) => {
                interrupted += 1;
                assert_eq!(code, 128 + sig, "{delay:?}: {stderr}");
                assert_eq!(stderr.trim_end().lines().count(), 1, "{delay:?}: {stderr}");
                assert!(stderr.contains("interrupted by SIG"), "{stderr}");
                // Either untouched or (signal after the swap) the new set.
                assert!(after == before || after.len() == 6, "{delay:?}: a mixed set {:?}", after.keys());
            }
            None => {
                // Only before rain routes the signals, at its very start.
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(o.status.signal(), Some(sig), "{delay:?}: {:?}", o.status);
                assert!(after == before, "{delay:?}: killed at the start, yet files changed");
            }
        }
        // Never a partial set, never a temporary file.
        assert!(after.len() == 6, "{delay:?}: {:?}", after.keys());
        let hidden: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "{delay:?}: temporary files left: {hidden:?}");
        // The set is one run's: the model and metrics agree on the seed.
        let metrics: serde_json::Value = serde_json::from_slice(&after["metrics.json"]).unwrap();
        let model: serde_json::Value = serde_json::from_slice(&after["model.json"]).unwrap();
        let seed = metrics["config"]["seed"].as_u64().unwrap();
        assert!((seed == 0) == (after == old), "{delay:?}: seed {seed} in metrics.json of another run's set");
        assert_eq!(model["metadata"]["threshold"], metrics["config"]["threshold"], "{delay:?}: mixed");
    }
    // The fourteen in the write phase must all have interrupted it.
    assert!(
        interrupted >= 14,
        "{interrupted} interrupted, {finished} finished: the signals missed the run (run 0 took {full:?}): {outcomes:#?}"
    );
}
