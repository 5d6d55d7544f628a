package explain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/authgate/caddy-authgate/callbacks"
)

// maxInput bounds the input file: variables, not a data set.
const maxInput = 1 << 20

// readInput reads callback's variables from path (- for standard input): one
// JSON object whose keys are the callback's CEL variables, each of its type.
func readInput(path, callback string) (map[string]any, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--input: %v", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, fmt.Errorf("--input %s: %v", path, err)
	}
	if len(b) > maxInput {
		return nil, fmt.Errorf("--input %s: over %d bytes", path, maxInput)
	}
	var vars map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&vars); err != nil || vars == nil {
		return nil, fmt.Errorf("--input %s: want a JSON object of the %s variables: %v", path, callback, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("--input %s: more than one JSON value", path)
	}
	kind := callback
	if callback == "require" {
		kind = callbacks.KindRoute
	}
	if _, ok := vars["session"]; ok && callback == callbacks.KindSession {
		return nil, fmt.Errorf("--input %s: session is what the session callback computes; give the token (and user, request)", path)
	}
	if err := callbacks.CheckVariables(kind, vars); err != nil {
		return nil, fmt.Errorf("--input %s: %v", path, err)
	}
	return vars, nil
}
