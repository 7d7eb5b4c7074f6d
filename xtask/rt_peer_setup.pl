#!/usr/bin/perl
# Prepares a freshly initialised RT for `cargo xtask peer rt`, through RT's own API: creates an
# auth token for root (printed on the last line of stdout) and the ticket custom fields named on
# the command line (single free-form values, applied to every queue).
# Run with RT_SITE_CONFIG / RT_SITE_CONFIG_DIR pointing at the throwaway instance's config.
use strict;
use warnings;
use lib '/usr/share/request-tracker5/lib', '/usr/local/share/request-tracker5/lib';
use RT;

RT::LoadConfig();
RT::Init();

my $root = RT::CurrentUser->new(RT->SystemUser);
$root->Load('root') or die "no root user in this RT\n";

for my $name (@ARGV) {
    my $cf = RT::CustomField->new(RT->SystemUser);
    my ($id, $msg) = $cf->Create(
        Name       => $name,
        Type       => 'Freeform',
        MaxValues  => 1,
        LookupType => 'RT::Queue-RT::Ticket',
    );
    die "cannot create custom field '$name': $msg\n" unless $id;
    # An unloaded queue object means "applies globally" (ObjectId 0).
    my ($ok, $apply_msg) = $cf->AddToObject(RT::Queue->new(RT->SystemUser));
    die "cannot apply custom field '$name' to all queues: $apply_msg\n" unless $ok;
}

my $token = RT::AuthToken->new($root);
my ($id, $msg, $auth) = $token->Create(Owner => $root->Id, Description => 'cargo xtask peer rt');
die "cannot create an auth token for root: $msg\n" unless $id;
print "$auth\n";
