// Command templates renders Lockstep's template conformance cases with Go's text/template and
// sprig v3, configured as ESO configures its v2 engine (missingkey=error; env, expandenv and
// getHostByName removed; data passed as map[string]string), and prints the golden JSON that
// crates/template/tests/conformance.rs checks the Rust engine against.
//
//	go run . ../../../crates/template/tests/conformance/cases.json > golden.json
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"text/template"
	_ "time/tzdata" // zones from the Go release, not from this machine
	"unicode/utf8"

	"github.com/Masterminds/sprig/v3"
)

// Case is one row of the case table.
type Case struct {
	Name     string            `json:"name"`
	Template string            `json:"template"`
	Data     map[string]string `json:"data,omitempty"`
	// DataBase64 adds values given in base64, for bytes that are not UTF-8 (PKCS#12, DER).
	DataBase64 map[string]string `json:"data_base64,omitempty"`
	// Expect is "ok" or "error"; the program fails when Go disagrees, so that a
	// mistyped case is caught when the golden file is generated.
	Expect string `json:"expect"`
	Left   string `json:"left,omitempty"`
	Right  string `json:"right,omitempty"`
}

// Golden is Go's result for one case.
type Golden struct {
	Name string `json:"name"`
	// Output is set when the output is valid UTF-8, OutputBase64 otherwise.
	Output       *string `json:"output,omitempty"`
	OutputBase64 string  `json:"output_base64,omitempty"`
	Error        string  `json:"error,omitempty"`
}

func funcs() template.FuncMap {
	f := sprig.TxtFuncMap()
	for _, name := range []string{"env", "expandenv", "getHostByName"} {
		delete(f, name)
	}
	esoFuncs(f)
	return f
}

func render(c Case) (string, error) {
	data := map[string]string{}
	for k, v := range c.Data {
		data[k] = v
	}
	for k, v := range c.DataBase64 {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return "", fmt.Errorf("case data %q: %w", k, err)
		}
		data[k] = string(b)
	}
	t := template.New("lockstep").Funcs(funcs()).Option("missingkey=error")
	if c.Left != "" || c.Right != "" {
		t = t.Delims(c.Left, c.Right)
	}
	t, err := t.Parse(c.Template)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Made is one row of rust_made.json: a template over data the Rust engine produced, and the
// output it must give.
type Made struct {
	Name     string            `json:"name"`
	Template string            `json:"template"`
	Data     map[string]string `json:"data"`
	Output   string            `json:"output"`
	// GoCheck names a further check of data["made"] with Go's own libraries: "dsa" (see
	// checkDSA).
	GoCheck string `json:"go_check,omitempty"`
}

// verify renders the rows of rust_made.json with Go and fails when an output differs.
func verify(path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var rows []Made
	if err := json.Unmarshal(raw, &rows); err != nil {
		fmt.Fprintln(os.Stderr, "rust_made:", err)
		os.Exit(1)
	}
	bad := 0
	for _, r := range rows {
		got, err := render(Case{Name: r.Name, Template: r.Template, Data: r.Data})
		if err != nil || got != r.Output {
			fmt.Fprintf(os.Stderr, "Rust-made %q: Go gives %q, %v\n", r.Name, got, err)
			bad++
		}
		switch r.GoCheck {
		case "":
		case "dsa":
			if err := checkDSA(r.Data["made"]); err != nil {
				fmt.Fprintf(os.Stderr, "Rust-made %q: %v\n", r.Name, err)
				bad++
			}
		default:
			fmt.Fprintf(os.Stderr, "Rust-made %q: unknown go_check %q\n", r.Name, r.GoCheck)
			bad++
		}
	}
	if bad > 0 {
		os.Exit(1)
	}
	fmt.Printf("Go reads all %d Rust-made outputs\n", len(rows))
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "verify" {
		verify(os.Args[2])
		return
	}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: templates CASES.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var cases []Case
	if err := json.Unmarshal(raw, &cases); err != nil {
		fmt.Fprintln(os.Stderr, "cases:", err)
		os.Exit(1)
	}
	seen := map[string]bool{}
	var out []Golden
	bad := 0
	for _, c := range cases {
		if seen[c.Name] {
			fmt.Fprintf(os.Stderr, "duplicate case name %q\n", c.Name)
			bad++
		}
		seen[c.Name] = true
		s, err := render(c)
		g := Golden{Name: c.Name}
		got := "ok"
		if err != nil {
			got = "error"
			g.Error = err.Error()
		} else if utf8.ValidString(s) {
			g.Output = &s
		} else {
			g.OutputBase64 = base64.StdEncoding.EncodeToString([]byte(s))
		}
		if got != c.Expect {
			fmt.Fprintf(os.Stderr, "case %q: expected %s, Go gives %s %v\n", c.Name, c.Expect, got, err)
			bad++
		}
		out = append(out, g)
	}
	if bad > 0 {
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
