use std::process::ExitCode;

fn main() -> ExitCode {
    // candle asks how many threads to use at every matrix product and, unless
    // RAYON_NUM_THREADS is set, finds out by reading /proc/cpuinfo: about a
    // millisecond per forward pass. One thread per product is also the
    // faster choice: the model's own pool runs messages and batches side by
    // side (BENCHMARKS.md). An operator's own setting is kept.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: nothing else runs yet, so no thread can read the
        // environment while it changes.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    faqbot::cli::main()
}
