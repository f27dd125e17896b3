<?php

namespace App\Classes\Extension;

/** Stand-in for Paymenter 1.x's App\Classes\Extension\Server, which adds nothing to Extension. */
class Server extends Extension {}
