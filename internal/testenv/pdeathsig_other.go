//go:build !linux

package testenv

import "os/exec"

// SetPdeathsig does nothing: only Linux can tie a child process's life to
// the test process's.
func SetPdeathsig(cmd *exec.Cmd) {}
