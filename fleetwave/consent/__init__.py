"""End users in the loop: the consent API (confirm, appoint, cancel, auto-confirm,
app-delivered upgrades), its rules, and importing who owns which device."""
