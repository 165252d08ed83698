output "public_ip" {
  description = "The reserved public IP: the A record of mx_name points here (and the PTR, by support request)."
  value       = oci_core_public_ip.mx.ip_address
}

output "instance_id" {
  description = "The VM's OCID (for the console's serial connection, the break-glass)."
  value       = oci_core_instance.mx.id
}
