//! `loadgen`: see `loadgen --help` and benches/tools/README.md.

use clap::Parser as _;
use sightline_bench_tools::loadgen::{Args, execute, prepare};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.write_catalog {
        let yaml = sightline_bench_tools::catalog_yaml(&args.corpus_config());
        std::fs::write(path, yaml).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        eprintln!(
            "loadgen: wrote the ownership catalog for {} services / {} teams to {}",
            args.services,
            args.teams,
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let t = std::time::Instant::now();
    let prepared = prepare(&args)?;
    let c = prepared.corpus();
    eprintln!(
        "loadgen: {} corpus ({}) in {:.1} s: {} requests x {} items, {} distinct resources, avg {:.0} B per item \
         ({:.0} B item messages alone), avg request {:.1} KiB ({:.1} KiB on the wire)",
        args.signal,
        args.span_size.as_str(),
        t.elapsed().as_secs_f64(),
        c.requests,
        c.items_per_request,
        c.distinct_resources,
        c.avg_item_bytes,
        c.avg_item_message_bytes,
        c.avg_request_bytes / 1024.0,
        c.avg_wire_request_bytes / 1024.0
    );
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build()?;
    let report = rt.block_on(execute(prepared))?;
    // In-flight requests past the drain are abandoned, not awaited.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    print!("{}", report.text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    let ok = report.requests.accepted > 0;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
