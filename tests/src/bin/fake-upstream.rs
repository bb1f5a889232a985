//! A loopback fake of the Slack, GitHub and Mailgun APIs (plus /echo), for the demo
//! (`examples/demo.sh`) and for trying the examples by hand.
//!
//! Prints its base URL (`http://127.0.0.1:PORT`) on stdout, then one line per request it
//! receives on stderr, and exits when stdin closes.
#![allow(clippy::unwrap_used)]

use latchkey_tests::upstream::Upstream;
use std::io::{Read, Write};
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let up = Upstream::start_blocking()?;
    println!("{}", up.base_url());
    std::io::stdout().flush()?;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = done_tx.send(());
    });
    let mut seen = 0;
    loop {
        let finished = done_rx.recv_timeout(Duration::from_millis(50)).is_ok();
        let requests = up.requests();
        for r in &requests[seen..] {
            let auth = r.header("authorization").unwrap_or("(none)");
            eprintln!("{} {} authorization: {auth}", r.method, r.path);
        }
        seen = requests.len();
        if finished {
            return Ok(());
        }
    }
}
