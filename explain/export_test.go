package explain

import (
	"io"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// Run runs the command with args, as `caddy authgate explain <args>` would,
// and returns its exit status.
func Run(args []string, out io.Writer) (int, error) {
	cmd := Command()
	if err := cmd.Flags().Parse(args); err != nil {
		return exitInvalid, err
	}
	return run(caddycmd.Flags{FlagSet: cmd.Flags()}, out)
}
