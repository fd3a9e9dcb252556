// crdcheck validates the custom resources a `helm template` run renders, without a cluster.
//
// An API server silently prunes fields a CRD does not know, so a misspelt KEDA or
// prometheus-operator field would install cleanly and do nothing. This program decodes each
// ScaledObject, TriggerAuthentication, ServiceMonitor and PrometheusRule strictly (unknown or
// mistyped fields are errors) into the upstream projects' own Go API types, which are the
// source their CRDs are generated from, and runs KEDA's exported admission checks (triggers,
// replica bounds, fallback, scaling modifiers) that its webhook would run.
//
//	helm template ... | crdcheck     # one JSON line per custom resource; exit 1 on any error
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

type result struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Checked    bool   `json:"checked"`
	Error      string `json:"error,omitempty"`
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

func checkScaledObject(doc []byte) error {
	var so kedav1alpha1.ScaledObject
	if err := yaml.UnmarshalStrict(doc, &so); err != nil {
		return err
	}
	if so.Spec.ScaleTargetRef == nil || so.Spec.ScaleTargetRef.Name == "" {
		return errors.New("spec.scaleTargetRef.name is required")
	}
	if len(so.Spec.Triggers) == 0 {
		return errors.New("spec.triggers is empty")
	}
	if err := kedav1alpha1.ValidateTriggers(so.Spec.Triggers); err != nil {
		return err
	}
	if err := kedav1alpha1.CheckReplicaCountBoundsAreValid(&so); err != nil {
		return err
	}
	if err := kedav1alpha1.CheckFallbackValid(&so); err != nil {
		return err
	}
	if so.IsUsingModifiers() {
		if _, err := kedav1alpha1.ValidateAndCompileScalingModifiers(&so); err != nil {
			return err
		}
	}
	return nil
}

func checkTriggerAuthentication(doc []byte) error {
	var ta kedav1alpha1.TriggerAuthentication
	if err := yaml.UnmarshalStrict(doc, &ta); err != nil {
		return err
	}
	if len(ta.Spec.SecretTargetRef) == 0 && len(ta.Spec.Env) == 0 && ta.Spec.PodIdentity == nil {
		return errors.New("spec has no secretTargetRef, env or podIdentity")
	}
	for _, ref := range ta.Spec.SecretTargetRef {
		if ref.Parameter == "" || ref.Name == "" || ref.Key == "" {
			return fmt.Errorf("secretTargetRef %+v: parameter, name and key are required", ref)
		}
	}
	return nil
}

func checkServiceMonitor(doc []byte) error {
	var sm monitoringv1.ServiceMonitor
	if err := yaml.UnmarshalStrict(doc, &sm); err != nil {
		return err
	}
	if len(sm.Spec.Endpoints) == 0 {
		return errors.New("spec.endpoints is empty")
	}
	return nil
}

func checkPrometheusRule(doc []byte) error {
	var pr monitoringv1.PrometheusRule
	if err := yaml.UnmarshalStrict(doc, &pr); err != nil {
		return err
	}
	if len(pr.Spec.Groups) == 0 {
		return errors.New("spec.groups is empty")
	}
	return nil
}

var checks = map[string]func([]byte) error{
	"keda.sh/v1alpha1/TriggerAuthentication":  checkTriggerAuthentication,
	"keda.sh/v1alpha1/ScaledObject":           checkScaledObject,
	"monitoring.coreos.com/v1/ServiceMonitor": checkServiceMonitor,
	"monitoring.coreos.com/v1/PrometheusRule": checkPrometheusRule,
}

func main() {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	out := json.NewEncoder(os.Stdout)
	failed := false
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "crdcheck: cannot read input:", err)
			os.Exit(2)
		}
		var h header
		if err := yaml.Unmarshal(doc, &h); err != nil {
			fmt.Fprintln(os.Stderr, "crdcheck: not a YAML object:", err)
			os.Exit(2)
		}
		if h.Kind == "" {
			continue // empty document (a template that rendered nothing)
		}
		r := result{APIVersion: h.APIVersion, Kind: h.Kind, Name: h.Metadata.Name}
		if check, ok := checks[h.APIVersion+"/"+h.Kind]; ok {
			r.Checked = true
			if err := check(doc); err != nil {
				r.Error = err.Error()
				failed = true
			}
		}
		_ = out.Encode(r)
	}
	if failed {
		os.Exit(1)
	}
}
