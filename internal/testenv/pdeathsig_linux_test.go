package testenv

import (
	"os/exec"
	"syscall"
	"testing"
)

func TestSetPdeathsig(t *testing.T) {
	cmd := exec.Command("true")
	SetPdeathsig(cmd)
	if cmd.SysProcAttr == nil || cmd.SysProcAttr.Pdeathsig != syscall.SIGKILL {
		t.Errorf("SysProcAttr = %+v, want Pdeathsig SIGKILL", cmd.SysProcAttr)
	}
}
