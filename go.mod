module rhizome

go 1.26

require github.com/maypok86/otter/v2 v2.4.0

require go.yaml.in/yaml/v3 v3.0.6
