// Package explain is `caddy authgate explain`: it evaluates the compiled rules
// of a configuration against variables from a JSON file, without a server,
// printing each rule it evaluated and the outcome, so that rules can be tested
// in CI.
package explain

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/authgate/caddy-authgate/callbacks"
)

// The exit statuses besides 0.
const (
	// exitDiffers: the outcome is not the one --expect names.
	exitDiffers = 1
	// exitInvalid: the configuration or the input is wrong.
	exitInvalid = 2
)

// callbackNames are the --callback values; require is the site directive's.
var callbackNames = []string{callbacks.KindSignIn, callbacks.KindRedirect, callbacks.KindJWT, callbacks.KindSession, "require"}

// Command is `explain`, a subcommand of `caddy authgate`.
func Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "explain --config <Caddyfile> --callback sign_in|redirect|jwt|session|require --input <vars.json> [--adapter caddyfile] [--realm <name>] [--site <host>] [--path <path>] [--expect <outcome>] [--webhooks]",
		Short: "Evaluates a configuration's rules against variables from a JSON file",
		Long: `
Evaluates the compiled rules of a callback (sign_in, redirect, jwt, session) or
the require lines of the site handler that guards --site and --path, against the
CEL variables in the --input JSON file (- for standard input), without starting
a server. It prints each rule it evaluated with its file:line and result, then
the outcome: allow, deny or redirect <url>, or the token or session as JSON.

A condition that reads an absent key decides against the user: an allow rule
does not apply, a deny or redirect rule does, a require line fails.

Webhooks are not called unless --webhooks is given.

--expect allow|deny|redirect makes the command exit 1 when the outcome differs;
for jwt and session, --expect takes a JSON object that the token or session
must contain, or deny (a rule fails). It exits 2 on a configuration or input
error. To test rules in CI, run it over inputs filed under their outcome
(rules/allow/*.json, rules/deny/*.json, …):

	for f in rules/*/*.json; do
		caddy authgate explain --config Caddyfile --callback sign_in \
			--input "$f" --expect "$(basename "$(dirname "$f")")" || exit 1
	done
`,
	}
	f := cmd.Flags()
	f.StringP("config", "c", "", "Configuration file (required)")
	f.StringP("adapter", "a", "", "Name of config adapter to apply (default: caddyfile for a Caddyfile)")
	f.String("realm", "", "Realm whose callbacks to evaluate (default: the unnamed one, or the only one)")
	f.String("callback", "", "sign_in, redirect, jwt, session or require (required)")
	f.String("site", "", "Host (or origin) of the request: require finds its site handler by it; redirect's base_url defaults to it")
	f.String("path", "", "Path of the request (default /)")
	f.StringP("input", "i", "", "JSON file of the callback's variables, - for standard input (required)")
	f.String("expect", "", "Exit 1 unless the outcome is this: allow, deny, redirect, or for jwt and session a JSON object it contains")
	f.Bool("webhooks", false, "Call webhook rules instead of passing over them")
	cmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		return run(fl, cmd.OutOrStdout())
	})
	return cmd
}

// options are the command's flags.
type options struct {
	config, adapter, realm, callback, site, path, input, expect string
	webhooks                                                    bool
}

func run(fl caddycmd.Flags, out io.Writer) (int, error) {
	o := options{
		config: fl.String("config"), adapter: fl.String("adapter"), realm: fl.String("realm"),
		callback: fl.String("callback"), site: fl.String("site"), path: fl.String("path"),
		input: fl.String("input"), expect: fl.String("expect"), webhooks: fl.Bool("webhooks"),
	}
	if err := o.check(); err != nil {
		return exitInvalid, err
	}
	cfg, err := loadConfig(o.config, o.adapter)
	if err != nil {
		return exitInvalid, err
	}
	vars, err := readInput(o.input, o.callback)
	if err != nil {
		return exitInvalid, err
	}
	e := &explainer{opts: o, cfg: cfg, vars: vars, out: out, trace: &callbacks.Trace{Webhooks: o.webhooks}}
	res, err := e.evaluate()
	if err != nil {
		return exitInvalid, err
	}
	e.flush()
	fmt.Fprintln(out, res)
	if o.expect != "" && !res.is(o.expect) {
		return exitDiffers, fmt.Errorf("the outcome is %s, --expect says %s", res.word(), o.expect)
	}
	return 0, nil
}

func (o options) check() error {
	var missing []string
	for name, v := range map[string]string{"--config": o.config, "--callback": o.callback, "--input": o.input} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("%s required", strings.Join(missing, ", "))
	}
	if !slices.Contains(callbackNames, o.callback) {
		return fmt.Errorf("--callback %q: want %s", o.callback, strings.Join(callbackNames, ", "))
	}
	if o.expect == "" {
		return nil
	}
	if o.callback == callbacks.KindJWT || o.callback == callbacks.KindSession {
		if o.expect == "deny" || json.Unmarshal([]byte(o.expect), new(map[string]any)) == nil {
			return nil
		}
		return fmt.Errorf("--expect %q: for %s, want deny or a JSON object the result contains", o.expect, o.callback)
	}
	if !slices.Contains([]string{"allow", "deny", "redirect"}, o.expect) {
		return fmt.Errorf("--expect %q: want allow, deny or redirect", o.expect)
	}
	return nil
}

// explainer evaluates one callback and prints the rules it evaluated.
type explainer struct {
	opts  options
	cfg   *config
	vars  map[string]any
	out   io.Writer
	trace *callbacks.Trace
	// printed is how many of trace's steps flush printed.
	printed int
}

func (e *explainer) ctx() context.Context {
	return callbacks.WithTrace(context.Background(), e.trace)
}

// flush prints the steps recorded since the last flush, a line each:
// file:line, the rule, what it did.
func (e *explainer) flush() {
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	for _, s := range e.trace.Steps[e.printed:] {
		src := s.Source
		if src == "" {
			src = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", src, s.Rule, s.Result)
	}
	_ = tw.Flush()
	e.printed = len(e.trace.Steps)
}

// note prints a line between the steps: a heading or a warning.
func (e *explainer) note(format string, args ...any) {
	e.flush()
	fmt.Fprintf(e.out, format+"\n", args...)
}

func (e *explainer) evaluate() (result, error) {
	switch e.opts.callback {
	case callbacks.KindSignIn:
		return e.signIn()
	case callbacks.KindRedirect:
		return e.redirect()
	case callbacks.KindJWT:
		return e.jwt()
	case callbacks.KindSession:
		return e.session()
	}
	return e.require()
}

// result is the outcome of an evaluation.
type result struct {
	// decision is allow, deny or redirect; empty for a token or session.
	decision string
	// detail is a redirect's URL, or why the decision is deny.
	detail string
	// value is the token or session computed.
	value map[string]any
}

func denied(why string) result { return result{decision: "deny", detail: why} }

// failed is the outcome of a rule that failed: the server refuses, as here.
func failed(err error) result { return denied("a rule failed: " + err.Error()) }

// word is the outcome as --expect names it.
func (r result) word() string {
	if r.decision == "" {
		return jsonText(r.value)
	}
	return r.decision
}

func (r result) String() string {
	switch {
	case r.decision == "":
		b, _ := json.MarshalIndent(r.value, "", "  ")
		return string(b)
	case r.detail == "":
		return r.decision
	case r.decision == "deny":
		return "deny (" + r.detail + ")"
	}
	return r.decision + " " + r.detail
}

// is reports whether r is the outcome expect names: a decision, or for a
// token or session a JSON object whose keys r has with the same values.
func (r result) is(expect string) bool {
	if r.decision != "" || expect == "deny" {
		return r.decision == expect
	}
	var want map[string]any
	if json.Unmarshal([]byte(expect), &want) != nil {
		return false
	}
	var got map[string]any
	if json.Unmarshal([]byte(jsonText(r.value)), &got) != nil {
		return false
	}
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			return false
		}
	}
	return true
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
