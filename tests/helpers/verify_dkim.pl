#!/usr/bin/perl
# Verifies every DKIM-Signature of the message on stdin with Mail::DKIM (Debian's
# libmail-dkim-perl), the public keys given as NAME=RECORD arguments instead of DNS.
# Prints one line per signature: algorithm domain result detail.
use strict; use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::PublicKey;
my %records = map { my ($n, $r) = split /=/, $_, 2; (lc $n, $r) } @ARGV;
{
    no warnings 'redefine';
    *Mail::DKIM::PublicKey::fetch_async = sub {
        my ($class, %prms) = @_;
        my $on_success = ($prms{Callbacks} || {})->{Success} || sub { $_[0] };
        my $record = $records{lc "$prms{Selector}._domainkey.$prms{Domain}"};
        my $result;
        if (defined $record) {
            my $key = $class->parse($record);
            $key->{Selector} = $prms{Selector}; $key->{Domain} = $prms{Domain};
            $key->check;
            $result = $on_success->($key);
        } else { $result = $on_success->(); }
        return sub { $result };
    };
}
binmode STDIN;
my $dkim = Mail::DKIM::Verifier->new();
while (<STDIN>) { s/\015?\012\z/\015\012/; $dkim->PRINT($_); }
$dkim->CLOSE;
foreach my $sig ($dkim->signatures) {
    printf "%s %s %s %s\n", $sig->algorithm, $sig->domain, $sig->result, ($sig->result_detail // "");
}
