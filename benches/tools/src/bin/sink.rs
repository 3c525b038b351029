//! `sink`: see `sink --help` and benches/tools/README.md.

use clap::Parser as _;
use sightline_bench_tools::sink::{Args, start};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sink: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async {
        let sink = match start(&args).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sink: {e}");
                return ExitCode::from(2);
            }
        };
        let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
        eprintln!(
            "sink: OTLP/gRPC on {}, OTLP/HTTP on {}, admin on {} (GET /stats, POST /reset)",
            show(sink.grpc_addr),
            show(sink.http_addr),
            show(sink.admin_addr)
        );
        wait_for_signal().await;
        println!("{}", serde_json::to_string_pretty(&sink.stats.snapshot()).unwrap_or_default());
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
