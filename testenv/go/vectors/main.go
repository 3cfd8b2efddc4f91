// Command vectors prints golden vectors for Lockstep's ESO-compatible hashes as JSON.
//
// Every value is computed with the Go expressions External Secrets Operator uses, so that
// the Rust implementation in crates/api/src/hash.rs can be checked against Go itself:
//
//   - object hash: lowercase hex SHA3-224 of fmt.Sprintf("%+v", object);
//   - data-hash annotation: object hash of the Secret's map[string][]byte;
//   - created-by label: object hash of fmt.Sprintf("%v/%v", namespace, name);
//   - syncedResourceVersion: fmt.Sprintf("%d-%s", generation, hash) where hash is the object
//     hash of a struct with two unexported fields, annotations then labels;
//   - field manager: fmt.Sprintf("externalsecrets.external-secrets.io/%v", name), or, when that
//     is longer than 63 bytes, fmt.Sprintf("externalsecrets.external-secrets.io/sha3/%x",
//     sha3.Sum224([]byte(name))).
//
// Every hash is computed twice, with golang.org/x/crypto/sha3 and with the standard library's
// crypto/sha3 (which ESO uses today); the program fails if the two ever disagree.
//
// Output is deterministic: run it twice, get the same bytes. check.sh compares it with the
// checked-in crates/api/tests/vectors/eso_hash.json.
package main

import (
	"bytes"
	stdsha3 "crypto/sha3"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"golang.org/x/crypto/sha3"
)

const (
	fieldManagerTemplate       = "externalsecrets.external-secrets.io/%v"
	fieldManagerHashedTemplate = "externalsecrets.external-secrets.io/sha3/%x"
	fieldManagerMaxLen         = 63
)

// objectHash is ESO's object hash: SHA3-224 of the %+v rendering, as lowercase hex.
func objectHash(object any) (text, hash string) {
	text = fmt.Sprintf("%+v", object)
	return text, sha3Hex(text)
}

// sha3Hex hashes with both SHA3 implementations and insists that they agree.
func sha3Hex(text string) string {
	x := fmt.Sprintf("%x", sha3.Sum224([]byte(text)))
	std := fmt.Sprintf("%x", stdsha3.Sum224([]byte(text)))
	if x != std {
		panic(fmt.Sprintf("x/crypto/sha3 and crypto/sha3 disagree on %q", text))
	}
	return x
}

// meta mirrors the struct ESO hashes for syncedResourceVersion: unexported fields,
// annotations first, labels second.
type meta struct {
	annotations map[string]string
	labels      map[string]string
}

func fieldManager(name string) string {
	fqdn := fmt.Sprintf(fieldManagerTemplate, name)
	if len(fqdn) > fieldManagerMaxLen {
		x := fmt.Sprintf(fieldManagerHashedTemplate, sha3.Sum224([]byte(name)))
		std := fmt.Sprintf(fieldManagerHashedTemplate, stdsha3.Sum224([]byte(name)))
		if x != std {
			panic("x/crypto/sha3 and crypto/sha3 disagree on a field manager")
		}
		fqdn = x
	}
	return fqdn
}

// entry is one key of a Secret's data. Bytes are written as numbers (not base64) so that the
// JSON is readable and needs no decoder. Nil marks a nil []byte (Go prints it like an empty one).
type entry struct {
	Key   string `json:"key"`
	Value []int  `json:"value"`
	Nil   bool   `json:"nil,omitempty"`
}

type dataHashVector struct {
	Name string `json:"name"`
	// Entries in the order the case lists them (deliberately not sorted); null for a nil map.
	Entries  []entry `json:"entries"`
	GoString string  `json:"go_string"`
	Hash     string  `json:"hash"`
}

type objectHashVector struct {
	Name string `json:"name"`
	// Input string; null means a nil interface value.
	Input    *string `json:"input"`
	GoString string  `json:"go_string"`
	Hash     string  `json:"hash"`
}

type createdByVector struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	ESName    string `json:"es_name"`
	GoString  string `json:"go_string"`
	Value     string `json:"value"`
}

type syncedResourceVersionVector struct {
	Name        string            `json:"name"`
	Generation  int64             `json:"generation"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	GoString    string            `json:"go_string"`
	Hash        string            `json:"hash"`
	Value       string            `json:"value"`
}

type fieldManagerVector struct {
	Name      string `json:"name"`
	ESName    string `json:"es_name"`
	NameBytes int    `json:"name_bytes"`
	Hashed    bool   `json:"hashed"`
	Value     string `json:"value"`
}

type vectors struct {
	Comment               string                        `json:"comment"`
	ObjectHash            []objectHashVector            `json:"object_hash"`
	DataHash              []dataHashVector              `json:"data_hash"`
	CreatedBy             []createdByVector             `json:"created_by"`
	SyncedResourceVersion []syncedResourceVersionVector `json:"synced_resource_version"`
	FieldManager          []fieldManagerVector          `json:"field_manager"`
}

type kv struct {
	k   string
	v   []byte
	nil bool
}

func b(s string) []byte { return []byte(s) }

func seq(n int, f func(i int) byte) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func dataCase(name string, isNil bool, kvs ...kv) dataHashVector {
	var m map[string][]byte
	var entries []entry
	if !isNil {
		m = make(map[string][]byte, len(kvs))
		entries = make([]entry, 0, len(kvs))
		for _, p := range kvs {
			value := p.v
			if p.nil {
				value = nil
			}
			m[p.k] = value
			ints := make([]int, len(p.v))
			for i, c := range p.v {
				ints[i] = int(c)
			}
			entries = append(entries, entry{Key: p.k, Value: ints, Nil: p.nil})
		}
	}
	text, hash := objectHash(m)
	return dataHashVector{Name: name, Entries: entries, GoString: text, Hash: hash}
}

func dataHashCases() []dataHashVector {
	all := seq(256, func(i int) byte { return byte(i) })
	var many []kv
	for i := 49; i >= 0; i-- {
		many = append(many, kv{k: fmt.Sprintf("key-%02d", (i*37)%50), v: b(strings.Repeat("v", i))})
	}
	return []dataHashVector{
		dataCase("nil map", true),
		dataCase("empty map", false),
		dataCase("single key", false, kv{k: "a", v: b("hi")}),
		dataCase("eso doc example", false, kv{k: "foo", v: b("value1")}, kv{k: "bar", v: b("value2")}),
		dataCase("keys in non-sorted insertion order", false,
			kv{k: "zeta", v: b("1")}, kv{k: "alpha", v: b("2")}, kv{k: "Mid", v: b("3")},
			kv{k: "_under", v: b("4")}, kv{k: "10", v: b("5")}, kv{k: "9", v: b("6")},
			kv{k: "a.b", v: b("7")}, kv{k: "a-b", v: b("8")}, kv{k: "a_b", v: b("9")},
			kv{k: "A", v: b("10")}, kv{k: "a", v: b("11")}, kv{k: "-", v: b("12")}, kv{k: ".", v: b("13")}),
		dataCase("bytes above 127 and zero", false, kv{k: "bin", v: []byte{0, 128, 255, 127, 1, 0, 200}}),
		dataCase("every byte value", false, kv{k: "all", v: all}),
		dataCase("empty and nil values", false,
			kv{k: "empty", v: []byte{}}, kv{k: "nil", nil: true}, kv{k: "x", v: b("x")}),
		dataCase("unicode keys", false,
			kv{k: "clé", v: b("é")}, kv{k: "ключ", v: b("значение")}, kv{k: "鍵", v: b("値")},
			kv{k: "emoji😀", v: b("😀")}, kv{k: "cle", v: b("e")}, kv{k: "Z", v: b("z")}),
		dataCase("values with spaces, colons and brackets", false,
			kv{k: "space", v: b("a b")}, kv{k: "colon", v: b("k:v")}, kv{k: "brackets", v: b("[1 2]")},
			kv{k: "map", v: b("map[x:y]")}, kv{k: "braces", v: b("{a:b}")}, kv{k: "newline", v: b("l1\nl2\r\n")}),
		dataCase("keys that look like go syntax", false,
			kv{k: "a b", v: b("1")}, kv{k: "a:b", v: b("2")}, kv{k: "[x]", v: b("3")},
			kv{k: "map[", v: b("4")}, kv{k: "]", v: b("5")}, kv{k: "", v: b("6")}),
		dataCase("1000-byte values", false,
			kv{k: "pattern", v: seq(1000, func(i int) byte { return byte(i % 256) })},
			kv{k: "xs", v: b(strings.Repeat("x", 1000))},
			kv{k: "high", v: seq(1000, func(i int) byte { return byte(255 - i%7) })}),
		dataCase("fifty keys", false, many...),
		dataCase("dockerconfigjson", false,
			kv{k: ".dockerconfigjson", v: b(`{"auths":{"registry.example":{"username":"u","password":"p","auth":"dTpw"}}}`)}),
		dataCase("typical credentials", false,
			kv{k: "username", v: b("admin")}, kv{k: "password", v: b("s3cr3t!@#$%^&*()")},
			kv{k: "url", v: b("postgres://admin:s3cr3t@db:5432/app?sslmode=require")}),
	}
}

func str(s string) *string { return &s }

func objectHashCases() []objectHashVector {
	out := []objectHashVector{}
	add := func(name string, input *string) {
		var object any
		if input != nil {
			object = *input
		}
		text, hash := objectHash(object)
		out = append(out, objectHashVector{Name: name, Input: input, GoString: text, Hash: hash})
	}
	add("eso doc: hello there", str("hello there"))
	add("eso doc: nil", nil)
	add("empty string", str(""))
	add("namespace/name", str("default/my-es"))
	add("unicode", str("名前/ключ"))
	add("percent and braces", str("%v {x} [y] map[z:1]"))
	add("long", str(strings.Repeat("ab", 600)))
	return out
}

func createdByCases() []createdByVector {
	pairs := []struct{ name, ns, es string }{
		{"simple", "default", "my-es"},
		{"empty namespace", "", "my-es"},
		{"kube-system", "kube-system", "registry-credentials"},
		{"long name", "team-a", strings.Repeat("n", 253)},
		{"slash in namespace position", "a/b", "c"},
		{"slash in name position", "a", "b/c"},
		{"unicode", "ns", "名前"},
	}
	out := make([]createdByVector, 0, len(pairs))
	for _, p := range pairs {
		text, hash := objectHash(fmt.Sprintf("%v/%v", p.ns, p.es))
		out = append(out, createdByVector{Name: p.name, Namespace: p.ns, ESName: p.es, GoString: text, Value: hash})
	}
	return out
}

func srvCase(name string, generation int64, labels, annotations map[string]string) syncedResourceVersionVector {
	text, hash := objectHash(meta{annotations: annotations, labels: labels})
	return syncedResourceVersionVector{
		Name:        name,
		Generation:  generation,
		Labels:      labels,
		Annotations: annotations,
		GoString:    text,
		Hash:        hash,
		Value:       fmt.Sprintf("%d-%s", generation, hash),
	}
}

func syncedResourceVersionCases() []syncedResourceVersionVector {
	manyLabels := map[string]string{}
	for i := 0; i < 30; i++ {
		manyLabels[fmt.Sprintf("l%d", (i*7)%30)] = fmt.Sprintf("v%d", i)
	}
	lastApplied := `{"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret","metadata":{"annotations":{},"name":"db","namespace":"app"},"spec":{"refreshInterval":"1h"}}` + "\n"
	return []syncedResourceVersionVector{
		srvCase("generation 0, nil maps", 0, nil, nil),
		srvCase("generation 1, nil maps", 1, nil, nil),
		srvCase("generation 1, empty maps", 1, map[string]string{}, map[string]string{}),
		srvCase("labels only", 1, map[string]string{"app": "web"}, nil),
		srvCase("annotations only", 2, nil, map[string]string{"note": "x"}),
		srvCase("both, unsorted keys", 3,
			map[string]string{"z": "1", "a": "2", "app.kubernetes.io/name": "web", "B": "3"},
			map[string]string{"zz": "last", "aa": "first", "external-secrets.io/force-sync": "1700000000"}),
		srvCase("large generation", 9223372036854775807, map[string]string{"x": "y"}, map[string]string{"k": "v"}),
		srvCase("negative generation", -1, nil, map[string]string{"k": "v"}),
		srvCase("kubectl last-applied-configuration", 5,
			map[string]string{"team": "payments"},
			map[string]string{"kubectl.kubernetes.io/last-applied-configuration": lastApplied}),
		srvCase("values with spaces, colons, brackets", 7,
			map[string]string{"l": "a b:c [d] map[e:f]"},
			map[string]string{"a": "x y", "b": "k:v", "c": "[1 2]", "d": "{}", "e": ""}),
		srvCase("unicode", 4, map[string]string{"ключ": "значение"}, map[string]string{"注": "😀", "é": "e"}),
		srvCase("empty key and value", 1, map[string]string{"": ""}, map[string]string{"": "v"}),
		srvCase("thirty labels", 12, manyLabels, map[string]string{"force": "true"}),
	}
}

func fieldManagerCases() []fieldManagerVector {
	prefix := len(fmt.Sprintf(fieldManagerTemplate, ""))
	limit := fieldManagerMaxLen - prefix // longest name that stays readable, in bytes
	names := []struct{ name, es string }{
		{"short", "my-es"},
		{"empty", ""},
		{"one below the limit", strings.Repeat("a", limit-1)},
		{"at the limit", strings.Repeat("b", limit)},
		{"one over the limit", strings.Repeat("c", limit+1)},
		{"two over the limit", strings.Repeat("d", limit+2)},
		{"63 bytes", strings.Repeat("e", 63)},
		{"64 bytes", strings.Repeat("f", 64)},
		{"253 bytes", strings.Repeat("g", 253)},
		{"multi-byte at the limit", strings.Repeat("h", limit-2) + "é"},
		{"multi-byte one over the limit", strings.Repeat("i", limit-1) + "é"},
		{"realistic long", "payments-postgres-primary-credentials"},
	}
	out := make([]fieldManagerVector, 0, len(names))
	for _, n := range names {
		value := fieldManager(n.es)
		out = append(out, fieldManagerVector{
			Name:      n.name,
			ESName:    n.es,
			NameBytes: len(n.es),
			Hashed:    strings.Contains(value, "/sha3/"),
			Value:     value,
		})
	}
	return out
}

func main() {
	v := vectors{
		Comment:               "Generated by testenv/go/vectors (go run .); do not edit. Checked by testenv/go/vectors/check.sh.",
		ObjectHash:            objectHashCases(),
		DataHash:              dataHashCases(),
		CreatedBy:             createdByCases(),
		SyncedResourceVersion: syncedResourceVersionCases(),
		FieldManager:          fieldManagerCases(),
	}
	if err := write(os.Stdout, v); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// write prints the vectors as JSON with one vector per line, so that diffs stay readable
// while long byte values do not spread over thousands of lines.
func write(w io.Writer, v vectors) error {
	var out bytes.Buffer
	out.WriteString("{\n")
	comment, err := compact(v.Comment)
	if err != nil {
		return err
	}
	fmt.Fprintf(&out, "  \"comment\": %s", comment)
	sections := []struct {
		name  string
		items any
	}{
		{"object_hash", v.ObjectHash},
		{"data_hash", v.DataHash},
		{"created_by", v.CreatedBy},
		{"synced_resource_version", v.SyncedResourceVersion},
		{"field_manager", v.FieldManager},
	}
	for _, s := range sections {
		fmt.Fprintf(&out, ",\n  %q: [", s.name)
		items := reflect.ValueOf(s.items)
		for i := 0; i < items.Len(); i++ {
			item, err := compact(items.Index(i).Interface())
			if err != nil {
				return err
			}
			if i > 0 {
				out.WriteString(",")
			}
			fmt.Fprintf(&out, "\n    %s", item)
		}
		out.WriteString("\n  ]")
	}
	out.WriteString("\n}\n")
	_, err = w.Write(out.Bytes())
	return err
}

// compact marshals one value on one line, without HTML escaping.
func compact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
