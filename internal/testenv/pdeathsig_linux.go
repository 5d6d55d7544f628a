package testenv

import (
	"os/exec"
	"syscall"
)

// SetPdeathsig has the kernel kill cmd's process when the test process dies
// without cleaning up (a panic, a timeout, a ^C). Call it before cmd.Start.
func SetPdeathsig(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
