# Every name and address of the stack.  Set them in terraform.tfvars (see
# terraform.tfvars.example); nothing secret belongs here.

variable "region" {
  description = "OCI region (the tenancy's home region for Always-Free), e.g. eu-frankfurt-1."
  type        = string
}

variable "oci_profile" {
  description = "Profile in ~/.oci/config holding the API key to use."
  type        = string
  default     = "DEFAULT"
}

variable "compartment_ocid" {
  description = "Compartment for every resource (the tenancy OCID for the root compartment)."
  type        = string
}

variable "availability_domain_index" {
  description = "Which availability domain (0-based) gets the VM; the E2.1.Micro shape is only offered in some."
  type        = number
  default     = 0
}

variable "name" {
  description = "Prefix for the display names of the resources."
  type        = string
  default     = "holdfast"
}

variable "vcn_cidr" {
  description = "Address range of the VCN."
  type        = string
  default     = "10.20.0.0/16"
}

variable "subnet_cidr" {
  description = "Address range of the VM's public subnet (inside vcn_cidr)."
  type        = string
  default     = "10.20.1.0/24"
}

variable "shape" {
  description = "Instance shape: the Always-Free AMD micro VM."
  type        = string
  default     = "VM.Standard.E2.1.Micro"
}

variable "image_os" {
  description = "Platform image operating system."
  type        = string
  default     = "Canonical Ubuntu"
}

variable "image_os_version" {
  description = "Platform image version (22.04 or 24.04; the newest image of it is used)."
  type        = string
  default     = "22.04"
}

variable "ssh_authorized_keys" {
  description = "Public SSH key(s) for the ubuntu user (public: not a secret)."
  type        = string
}

variable "mx_name" {
  description = "The backup MX's DNS name (its A record points at the reserved IP)."
  type        = string
}

variable "domains" {
  description = "The mail domains it backs up, comma-separated."
  type        = string
}

variable "primary_host" {
  description = "The primary MX, where holdfast drains to."
  type        = string
}

variable "primary_port" {
  description = "The primary's drain port (outbound 25 is blocked on OCI)."
  type        = number
  default     = 2526
}

variable "home_cidr" {
  description = "The home WAN address (CIDR, e.g. 198.51.100.1/32) allowed to scrape the metrics port and node_exporter."
  type        = string
}

variable "mgmt_cidrs" {
  description = "The only sources allowed to reach SSH (e.g. the home /32); empty: no SSH, the OCI console is the way in."
  type        = list(string)
  default     = []
}

variable "metrics_port" {
  description = "holdfast's [metrics] listen port."
  type        = number
  default     = 9465
}

variable "acme_email" {
  description = "Let's Encrypt account e-mail."
  type        = string
}

variable "holdfast_repo" {
  description = "Git repository the VM builds holdfast from."
  type        = string
}

variable "holdfast_ref" {
  description = "Branch, tag or commit of holdfast_repo to build (pin a commit hash for a reproducible rebuild)."
  type        = string
  default     = "main"
}

variable "dnsbl" {
  description = "holdfast [screen] dnsbl (empty: none)."
  type        = string
  default     = "zen.spamhaus.org"
}

variable "mx_expect" {
  description = "The MX set the first domain must have (e.g. mail.example.org:1,mx2.example.org:20), checked every 15 minutes by holdfast-check-mx.timer for alert MxSetDrift; empty: no check."
  type        = string
}
