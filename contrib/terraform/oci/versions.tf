terraform {
  required_version = ">= 1.3"
  required_providers {
    oci = {
      source  = "oracle/oci"
      version = ">= 5.0"
    }
  }
}

# Credentials come from the OCI CLI config file (~/.oci/config, profile
# var.oci_profile) or the environment, never from this repository.
provider "oci" {
  region              = var.region
  config_file_profile = var.oci_profile
}
