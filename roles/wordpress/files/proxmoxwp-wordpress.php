<?php
/**
 * Installs WordPress and reports its state, the way wp-cli's `core install` does: load WordPress with
 * WP_INSTALLING set and call its own installer. There is no wp-cli in the container. On a site already
 * installed, `install` sets the administrator's password to the request's (wp-cli's `user update --user_pass`);
 * with "only_password" it does only that, and refuses a site that is not installed.
 *
 *   php proxmoxwp-wordpress.php install   < {"root", "host", "title", "admin_user", "admin_email", "admin_password"}
 *   php proxmoxwp-wordpress.php install   < {"root", "host", "admin_user", "admin_password", "only_password": true}
 *   php proxmoxwp-wordpress.php status    < {"root", "host"}
 *
 * The request comes on stdin, so the password is never on a command line. The answer is one JSON object
 * on stdout; an error is a JSON object with "error" and exit status 1.
 */

function proxmoxwp_answer( array $answer, int $status = 0 ): void {
	$GLOBALS['proxmoxwp_answered'] = true;
	fwrite( STDOUT, json_encode( $answer ) . "\n" );
	exit( $status );
}

// WordPress ends the process itself when it cannot load (wp_die: no database, a broken configuration); what
// it printed becomes the error, without its markup.
register_shutdown_function(
	static function (): void {
		if ( ! empty( $GLOBALS['proxmoxwp_answered'] ) ) {
			return;
		}
		$seen = '';
		while ( ob_get_level() > 0 ) {
			$seen .= ob_get_clean();
		}
		if ( preg_match( '~<h1>(.*?)</h1>~s', $seen, $heading ) ) {
			$seen = $heading[1];
		}
		$seen = trim( preg_replace( '/\s+/', ' ', strip_tags( $seen ) ) );
		fwrite( STDOUT, json_encode( array( 'error' => 'WordPress stopped while loading: ' . substr( $seen, 0, 300 ) ) ) . "\n" );
		exit( 1 );
	}
);

set_error_handler(
	static function ( int $severity, string $message ): bool {
		// WordPress's own deprecation notices and warnings are not failures of the installation.
		return ! ( $severity & ( E_ERROR | E_USER_ERROR | E_RECOVERABLE_ERROR ) );
	}
);

$command = $argv[1] ?? '';
$request = json_decode( stream_get_contents( STDIN ), true );
if ( ! in_array( $command, array( 'install', 'status' ), true ) || ! is_array( $request ) ) {
	proxmoxwp_answer( array( 'error' => 'usage: proxmoxwp-wordpress.php install|status < request.json' ), 1 );
}

// WordPress reads the host and scheme of "the request" while it loads; the site's own name stands in.
$_SERVER['HTTP_HOST']   = $request['host'];
$_SERVER['SERVER_NAME'] = $request['host'];
$_SERVER['REQUEST_URI'] = '/';

// As while installing, WordPress loads without redirecting to its installer and without plugins.
define( 'WP_INSTALLING', true );
// The API hands the password to the customer; WordPress's e-mail with it is not sent.
function wp_new_blog_notification() {}

ob_start();
require $request['root'] . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
ob_end_clean();

global $wpdb;
if ( ! $wpdb->check_connection( false ) ) {
	proxmoxwp_answer( array( 'error' => 'WordPress cannot connect to its database.' ), 1 );
}

$installed = is_blog_installed();

if ( 'status' === $command ) {
	$tables = $wpdb->get_col( $wpdb->prepare( 'SHOW TABLES LIKE %s', $wpdb->esc_like( $wpdb->prefix ) . '%' ) );
	proxmoxwp_answer(
		array(
			'installed'     => $installed,
			'tables'        => array_values( $tables ),
			'prefix'        => $wpdb->prefix,
			// The title as the front page shows it (escaped and typographically dressed by WordPress).
			'display_title' => $installed ? get_bloginfo( 'name', 'display' ) : null,
		)
	);
}

if ( ! $installed && ! empty( $request['only_password'] ) ) {
	proxmoxwp_answer( array( 'error' => 'WordPress is not installed, so it has no administrator whose password to set.' ), 1 );
}

if ( $installed ) {
	// A site installed by an earlier run (a creation retried or made again on the container it left) gets the
	// password of this request: the one the API handed out last must log in, and no earlier one.
	if ( ! isset( $request['admin_user'], $request['admin_password'] ) || '' === $request['admin_password'] ) {
		proxmoxwp_answer( array( 'changed' => false ) );
	}
	$admin = get_user_by( 'login', $request['admin_user'] );
	if ( ! $admin ) {
		proxmoxwp_answer( array( 'error' => 'WordPress is installed without the administrator ' . $request['admin_user'] . '.' ), 1 );
	}
	if ( wp_check_password( $request['admin_password'], $admin->user_pass, $admin->ID ) ) {
		proxmoxwp_answer( array( 'changed' => false ) );
	}
	// Also ends the sessions logged in with the old password: their cookies carry a piece of its hash.
	wp_set_password( $request['admin_password'], $admin->ID );
	proxmoxwp_answer( array( 'changed' => true, 'password_set' => true, 'user_id' => $admin->ID ) );
}

foreach ( array( 'title', 'admin_user', 'admin_email', 'admin_password' ) as $field ) {
	if ( ! isset( $request[ $field ] ) || '' === $request[ $field ] ) {
		proxmoxwp_answer( array( 'error' => "The installation needs $field." ), 1 );
	}
}
if ( ! is_email( $request['admin_email'] ) ) {
	proxmoxwp_answer( array( 'error' => 'The administrator e-mail address is not valid.' ), 1 );
}

ob_start();
$result = wp_install(
	wp_slash( $request['title'] ),
	wp_slash( $request['admin_user'] ),
	wp_slash( $request['admin_email'] ),
	true,
	'',
	wp_slash( $request['admin_password'] )
);
ob_end_clean();

if ( is_wp_error( $result ) ) {
	proxmoxwp_answer( array( 'error' => $result->get_error_message() ), 1 );
}
// WordPress shows the login itself as the author's name (posts, feeds) and in the author's archive URL; the site
// shows another name, so that the login stays the visitor's guess. The customer may change it in the profile.
$renamed = wp_update_user(
	array(
		'ID'            => $result['user_id'],
		'display_name'  => 'Site administrator',
		'nickname'      => 'Site administrator',
		'user_nicename' => 'site-administrator',
	)
);
if ( is_wp_error( $renamed ) ) {
	proxmoxwp_answer( array( 'error' => $renamed->get_error_message() ), 1 );
}
proxmoxwp_answer( array( 'changed' => true, 'user_id' => $result['user_id'] ) );
