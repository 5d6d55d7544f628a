package testenv

import (
	"os"
	"syscall"
	"time"
)

// Terminate stops a child process the way a service manager would: SIGTERM,
// then SIGKILL when it has not exited after grace. exited is closed when the
// process has exited (by the goroutine that waits for it); Terminate returns
// once it is.
func Terminate(p *os.Process, exited <-chan struct{}, grace time.Duration) {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = p.Kill()
		<-exited
	}
}
