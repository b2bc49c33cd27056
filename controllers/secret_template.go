package controllers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/Masterminds/sprig/v3"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// Secret templates (spec.secret.template and spec.secret.formats): the pure
// renderer, with its limits and its error messages. Rendering never
// reads the environment, files, the network, the clock or randomness: the same
// credentials and spec always give the same bytes, so a Secret is rewritten only
// when either changes.

// templateInput is what a template sees.
type templateInput struct {
	AccountSID string
	AuthToken  string
	Scopes     []string
	APIVersion int
	BackendURL string
	// TokenURL is the OAuth2 token endpoint of backends that have one; empty
	// otherwise.
	TokenURL string
}

// Output limits: a Secret holds at most 1 MiB, and what a consumer reads from a
// templated key is a file or a variable, never that large.
const (
	maxRenderedKey    = 64 << 10
	maxRenderedSecret = 256 << 10
)

// templateFuncNames are the functions a template may call: sprig's string, list,
// encoding and hashing functions. Left out on purpose: env and expandenv (the
// operator's environment), getHostByName (the network), now and the date
// functions, the random, UUID, key and password functions (each would render
// other bytes at every pass, rewriting the Secret and rolling its consumers),
// fail (its message would carry rendered data into the status), and keys and
// values (a map's order is random: the Secret would change at every render).
// Every function is bounded (bounded), and so is Go's printf.
var templateFuncNames = []string{
	"abbrev", "b32dec", "b32enc", "b64dec", "b64enc", "cat", "coalesce", "compact", "contains",
	"default", "dict", "empty", "first", "get", "has", "hasKey", "hasPrefix", "hasSuffix", "indent",
	"initial", "join", "last", "list", "lower", "nindent", "nospace", "quote", "replace",
	"rest", "sha1sum", "sha256sum", "sortAlpha", "splitList", "squote", "substr", "ternary", "title",
	"toJson", "toPrettyJson", "toString", "trim", "trimAll", "trimPrefix", "trimSuffix", "trunc",
	"uniq", "upper", "without",
}

// templateFuncs is the function map of every template, built once.
var templateFuncs = func() template.FuncMap {
	all := sprig.TxtFuncMap()
	funcs := template.FuncMap{"printf": bounded("printf", fmt.Sprintf)}
	for _, name := range templateFuncNames {
		if f, ok := all[name]; ok {
			funcs[name] = bounded(name, f)
		}
	}
	return funcs
}()

// templateError is a template that fails to parse or render. Its message names
// the key and the position in the template, and never holds rendered data or a
// credential.
type templateError struct{ message string }

func (e *templateError) Error() string { return e.message }

// renderTemplates renders the templated keys and the ready-made formats.
// Templates are checked first against placeholder credentials, so that what an
// error says can only come from the template; a failure that only the real
// credentials cause is reported by its position alone.
func renderTemplates(templates map[string]string, formats []tokensv1alpha1.SecretFormat, in templateInput) (map[string][]byte, error) {
	out := map[string][]byte{}
	keys := slices.Sorted(maps.Keys(templates))
	total := 0
	for _, key := range keys {
		rendered, err := renderOne(key, templates[key], in)
		if err != nil {
			return nil, err
		}
		total += len(rendered)
		out[key] = rendered
	}
	for _, format := range formats {
		key := format.Key()
		if _, taken := out[key]; taken {
			return nil, &templateError{message: fmt.Sprintf("spec.secret.formats: %s writes %s, which spec.secret.template.data names too", format, key)}
		}
		if key == "" {
			return nil, &templateError{message: fmt.Sprintf("spec.secret.formats: unknown format %q (Env, Netrc, JSON)", format)}
		}
		rendered, err := renderFormat(format, in)
		if err != nil {
			return nil, err
		}
		total += len(rendered)
		out[key] = rendered
	}
	if total > maxRenderedSecret {
		return nil, &templateError{message: fmt.Sprintf("spec.secret.template: the rendered keys hold %d bytes, more than the %d a Secret may hold", total, maxRenderedSecret)}
	}
	return out, nil
}

// placeholderCredentials stand in for the credentials when a template is
// checked, or when a failure is told apart: a failure with them can only come
// from the template. The token is as long as a real one (32 random bytes in
// base64url), so that slicing a real token works on it too.
const (
	placeholderSID   = "ACCOUNT-SID"
	placeholderToken = "AUTH-TOKEN-PLACEHOLDER-OF-43-CHARACTERS-xyz"
)

// withPlaceholders is in with its credentials replaced by the placeholders.
func withPlaceholders(in templateInput) templateInput {
	in.AccountSID, in.AuthToken = placeholderSID, placeholderToken
	return in
}

// renderOne renders one key. A failure is reported from a render with the
// placeholders when they fail too (the message then cannot hold anything of the
// credentials); a failure only the real credentials cause is reported without
// any detail, not even its position, which could say something of the token.
func renderOne(key, text string, in templateInput) ([]byte, error) {
	tmpl, err := parseTemplate(key, text)
	if err != nil {
		return nil, err
	}
	rendered, err := execute(tmpl, in)
	if err == nil {
		return rendered, nil
	}
	if _, placeholderErr := execute(tmpl, withPlaceholders(in)); placeholderErr != nil {
		return nil, &templateError{message: fmt.Sprintf("spec.secret.template.data[%q]: %s", key, describeFailure(placeholderErr))}
	}
	return nil, &templateError{message: fmt.Sprintf("spec.secret.template.data[%q]: fails with the current credentials", key)}
}

// parseTemplate parses one template and refuses what could run unbounded: a
// range over anything but a field or a variable (a range over a number loops
// that many times), a range inside a range, and define/template/block
// (recursion).
func parseTemplate(key, text string) (*template.Template, error) {
	tmpl, err := template.New(key).Option("missingkey=error").Funcs(templateFuncs).Parse(text)
	if err != nil {
		return nil, &templateError{message: fmt.Sprintf("spec.secret.template.data[%q]: %s", key, strings.TrimPrefix(err.Error(), "template: "))}
	}
	if len(tmpl.Templates()) > 1 {
		return nil, &templateError{message: fmt.Sprintf("spec.secret.template.data[%q]: define and block are not supported", key)}
	}
	if reason := unbounded(tmpl.Root, 0); reason != "" {
		return nil, &templateError{message: fmt.Sprintf("spec.secret.template.data[%q]: %s", key, reason)}
	}
	return tmpl, nil
}

// unbounded walks a parse tree and says what in it is not allowed, if anything.
func unbounded(node parse.Node, ranges int) string {
	switch n := node.(type) {
	case *parse.ListNode:
		if n == nil {
			return ""
		}
		for _, c := range n.Nodes {
			if reason := unbounded(c, ranges); reason != "" {
				return reason
			}
		}
	case *parse.TemplateNode:
		return "template calls are not supported"
	case *parse.RangeNode:
		if ranges > 0 {
			return "a range inside a range is not supported"
		}
		if !rangesOverAList(n.Pipe) {
			return "range may only iterate over a field (such as .Scopes) or a variable"
		}
		return firstOf(unbounded(n.List, ranges+1), unbounded(n.ElseList, ranges))
	case *parse.IfNode:
		return firstOf(unbounded(n.List, ranges), unbounded(n.ElseList, ranges))
	case *parse.WithNode:
		return firstOf(unbounded(n.List, ranges), unbounded(n.ElseList, ranges))
	}
	return ""
}

// rangesOverAList reports a range pipeline that is one field or variable
// (.Scopes, $list), whose length the input or the template's own list bounds.
func rangesOverAList(pipe *parse.PipeNode) bool {
	if pipe == nil || len(pipe.Cmds) != 1 || len(pipe.Cmds[0].Args) != 1 {
		return false
	}
	switch pipe.Cmds[0].Args[0].(type) {
	case *parse.FieldNode, *parse.VariableNode:
		return true
	}
	return false
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// describeFailure is what a failed render says: the position and the reason
// from text/template, or that the output is too large.
func describeFailure(err error) string {
	if errors.Is(err, errTooLarge) {
		return fmt.Sprintf("renders more than %d bytes", maxRenderedKey)
	}
	return strings.TrimPrefix(err.Error(), "template: ")
}

// errTooLarge stops a template whose output, or any value it computes, passes
// maxRenderedKey.
var errTooLarge = errors.New("output too large")

type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxRenderedKey {
		return 0, errTooLarge
	}
	return b.Buffer.Write(p)
}

func execute(tmpl *template.Template, in templateInput) ([]byte, error) {
	var buf limitedBuffer
	if err := tmpl.Execute(&buf, in); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// bounded wraps a template function so that a string, byte or list result
// larger than maxRenderedKey is an error: nested calls (b64enc of b64enc of
// ..., indent with a huge count, printf with a huge width) can then never build
// a value larger than a key may hold, whatever the template.
func bounded(name string, f any) any {
	fv := reflect.ValueOf(f)
	ft := fv.Type()
	errorType := reflect.TypeFor[error]()
	in := make([]reflect.Type, ft.NumIn())
	for i := range in {
		in[i] = ft.In(i)
	}
	out := []reflect.Type{ft.Out(0), errorType}
	wrapped := reflect.MakeFunc(reflect.FuncOf(in, out, ft.IsVariadic()), func(args []reflect.Value) []reflect.Value {
		var results []reflect.Value
		if ft.IsVariadic() {
			results = fv.CallSlice(args)
		} else {
			results = fv.Call(args)
		}
		errValue := reflect.Zero(errorType)
		switch {
		case len(results) == 2 && !results[1].IsNil():
			errValue = results[1]
		case tooLarge(results[0]):
			errValue = reflect.ValueOf(fmt.Errorf("%s: %w", name, errTooLarge))
		}
		return []reflect.Value{results[0], errValue}
	})
	return wrapped.Interface()
}

// tooLarge reports a value larger than a key may hold.
func tooLarge(v reflect.Value) bool {
	for v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.String, reflect.Slice, reflect.Array, reflect.Map:
		return v.Len() > maxRenderedKey
	}
	return false
}

// plainEnvValue matches a value every dotenv reader takes as it is, unquoted:
// SIDs, tokens (base64url) and URLs are.
var plainEnvValue = regexp.MustCompile(`^[A-Za-z0-9._~:/@+=,%-]*$`)

// envValue is a value for a .env line: as it is when plain, else in single
// quotes (no expansion in shells and dotenv readers), with any single quote
// written as '\”.
func envValue(v string) string {
	if plainEnvValue.MatchString(v) {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// renderFormat writes one ready-made format.
func renderFormat(format tokensv1alpha1.SecretFormat, in templateInput) ([]byte, error) {
	switch format {
	case tokensv1alpha1.SecretFormatEnv:
		var b strings.Builder
		for _, kv := range [][2]string{
			{"ACCOUNT_SID", in.AccountSID}, {"AUTH_TOKEN", in.AuthToken}, {"API_BASE_URL", in.BackendURL}, {"TOKEN_URL", in.TokenURL},
		} {
			if kv[1] != "" {
				b.WriteString(kv[0] + "=" + envValue(kv[1]) + "\n")
			}
		}
		return []byte(b.String()), nil
	case tokensv1alpha1.SecretFormatNetrc:
		host := "localhost"
		if u, err := url.Parse(in.BackendURL); err == nil && u.Hostname() != "" {
			host = u.Hostname()
		}
		return []byte("machine " + host + " login " + in.AccountSID + " password " + in.AuthToken + "\n"), nil
	default: // FormatJSON
		doc := struct {
			AccountSID string   `json:"accountSid"`
			AuthToken  string   `json:"authToken"`
			APIVersion int      `json:"apiVersion"`
			Scopes     []string `json:"scopes"`
			BackendURL string   `json:"backendUrl"`
			TokenURL   string   `json:"tokenUrl,omitempty"`
		}{in.AccountSID, in.AuthToken, in.APIVersion, in.Scopes, in.BackendURL, in.TokenURL}
		out, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", format, err)
		}
		return append(out, '\n'), nil
	}
}
