//! Reverse execution (`bc`, `bs`): like forward resumes, these only record the request;
//! [`TtvmTarget::execute`](crate::target::TtvmTarget) runs the timeline backwards
//! (`run_backward` / `step_backward`). The edges of history are reported as
//! `replaylog:begin` / `replaylog:end`, which gdb shows as "No more reverse-execution
//! history."

use gdbstub::target::ext::base::reverse_exec::{ReverseCont, ReverseStep};

use crate::error::GdbError;
use crate::target::{Resume, TtvmTarget};

impl ReverseCont<()> for TtvmTarget<'_> {
    fn reverse_cont(&mut self) -> Result<(), GdbError> {
        self.resume = Some(Resume::ReverseContinue);
        Ok(())
    }
}

impl ReverseStep<()> for TtvmTarget<'_> {
    fn reverse_step(&mut self, _tid: ()) -> Result<(), GdbError> {
        self.resume = Some(Resume::ReverseStep);
        Ok(())
    }
}
