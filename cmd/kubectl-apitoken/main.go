/*
Copyright 2026 The apitoken-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command kubectl-apitoken is the kubectl plugin of apitoken-operator
// ("kubectl apitoken" once it is on PATH). Its code is in internal/plugin.
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/apitoken-dev/apitoken-operator/internal/plugin"
)

// version is stamped by make plugin: -ldflags "-X main.version=...".
var version = "dev"

func main() {
	o := &plugin.Options{IOStreams: genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, Version: version}
	if err := plugin.Execute(o, os.Args[1:]); err != nil {
		os.Exit(1)
	}
}
