//! The terminal's progress bar of a replay.

/// The terminal's progress bar: objects read, events per second, the event time reached.
pub(super) struct Progress(indicatif::ProgressBar);

impl Progress {
    pub(super) fn new(show: bool, objects: usize) -> Self {
        let bar = match show {
            true => indicatif::ProgressBar::new(objects as u64),
            false => indicatif::ProgressBar::hidden(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} objects  {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Progress(bar)
    }

    pub(super) fn objects_done(&self) -> usize {
        self.0.position() as usize
    }

    pub(super) fn set_objects(&self, n: usize) {
        self.0.set_position(n as u64);
    }

    pub(super) fn update(&self, objects: usize, records: u64, at: Option<i64>) {
        self.set_objects(objects);
        let secs = self.0.elapsed().as_secs_f64().max(1e-3);
        let at = at.map(crate::units::datetime).unwrap_or_default();
        self.0.set_message(format!(
            "{records} events, {:.0}/s, at {at}",
            records as f64 / secs
        ));
    }

    pub(super) fn finish(&self) {
        self.0.finish_and_clear();
    }
}
